// Calls the library's pure helpers (jenkins/src) for unit tests, on Groovy 2.4.
//
//   groovy -cp tests/groovy/stubs:tests/groovy:jenkins/src tests/groovy/call.groovy LIBRARY REQUESTS.json
//
// REQUESTS: a JSON list of {target: 'Platforms', method: 'normalise', args: [...]}; the argument
// '@arches' stands for resources/archfleet/arches.json's text, '@table' for its parsed table.
// target '@compile' compiles every vars/*.groovy and src/**/*.groovy file (Groovy 2.4 syntax).
// serialize: true writes the raw result with ObjectOutputStream, as workflow-cps saves program
// state (value: the class names met, or the NotSerializableException).
// Prints a JSON list of {value: ...} or {error: message, errorClass: ...}, one per request.
import groovy.json.JsonSlurper
import org.codehaus.groovy.runtime.InvokerHelper

File library = new File(args[0])
List requests = (List) new JsonSlurper().parse(new File(args[1]))
String arches = new File(library, 'resources/archfleet/arches.json').getText('UTF-8')
ClassLoader loader = this.class.classLoader

Object resolve(Object arg, String arches, ClassLoader loader) {
    if (arg == '@arches') {
        return arches
    }
    if (arg == '@table') {
        return InvokerHelper.invokeStaticMethod(loader.loadClass('archfleet.Platforms'), 'parseTable', arches)
    }
    return arg
}

Set<String> classesIn(Object value) {
    Set<String> names = [value?.getClass()?.name ?: 'null'] as Set
    if (value instanceof Map) {
        ((Map) value).each { k, v -> names.addAll(classesIn(v)) }
    } else if (value instanceof Collection) {
        ((Collection) value).each { names.addAll(classesIn(it)) }
    }
    return names
}

List results = requests.collect { Map request ->
    try {
        if (request.target == '@compile') {
            List compiled = []
            GroovyShell shell = new GroovyShell(loader)
            new File(library, 'vars').eachFileMatch(~/.*\.groovy/) { File f ->
                shell.parse(f)
                compiled << "vars/${f.name}".toString()
            }
            new File(library, 'src').eachFileRecurse { File f ->
                if (f.name.endsWith('.groovy')) {
                    new GroovyClassLoader(loader).parseClass(f)
                    compiled << (f.path - library.path).substring(1)
                }
            }
            return [value: compiled.sort()]
        }
        Class target = loader.loadClass("archfleet.${request.target}")
        if (request.method == '@field') {
            return [value: PipelineHarness.jsonable(target."${request.args[0]}")]
        }
        Object[] callArgs = ((List) request.args).collect { resolve(it, arches, loader) } as Object[]
        Object value = InvokerHelper.invokeStaticMethod(target, request.method.toString(), callArgs)
        if (request.serialize) {
            new ObjectOutputStream(new ByteArrayOutputStream()).writeObject(value)
            return [value: classesIn(value).sort()]
        }
        return [value: PipelineHarness.jsonable(value)]
    } catch (Throwable e) {
        return [error: e.message, errorClass: e.getClass().name]
    }
}
println PipelineHarness.toJson(results)
