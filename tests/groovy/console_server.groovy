// The FAKE Jenkins' script console (tests/support/jenkins_fake.py): one JVM that evaluates
// scripts the way /scriptText does (println goes to the answer; an exception's stack trace is
// the answer), against the fake plugin classes on its classpath.
//
// Protocol on stdin/stdout: "<byte length>\n<script>" in, "<byte length>\n<output>" out.
DataInputStream input = new DataInputStream(new BufferedInputStream(System.in))
OutputStream answers = new BufferedOutputStream(new FileOutputStream(FileDescriptor.out))
ClassLoader loader = this.class.classLoader

String readHeader(DataInputStream input) {
    StringBuilder header = new StringBuilder()
    while (true) {
        int b = input.read()
        if (b == -1) {
            return header.length() ? header.toString() : null
        }
        if (b == (int) '\n') {
            return header.toString()
        }
        header.append((char) b)
    }
}

while (true) {
    String header = readHeader(input)
    if (header == null) {
        break
    }
    byte[] script = new byte[Integer.parseInt(header.trim())]
    input.readFully(script)
    StringWriter text = new StringWriter()
    PrintWriter out = new PrintWriter(text)
    Binding binding = new Binding()
    binding.setVariable('out', out)
    try {
        new GroovyShell(loader, binding).evaluate(new String(script, 'UTF-8'), 'Script1.groovy')
    } catch (Throwable e) {
        e.printStackTrace(out)
    }
    out.flush()
    byte[] answer = text.toString().getBytes('UTF-8')
    answers.write("${answer.length}\n".getBytes('UTF-8'))
    answers.write(answer)
    answers.flush()
}
