import hudson.AbortException

/**
 * A STAND-IN for Docker Pipeline's `docker` global variable and the two steps behind it, for
 * PipelineHarness. It follows jenkinsci/docker-workflow-plugin (read at 3e04e4f5):
 *  - src/main/resources/org/jenkinsci/plugins/docker/workflow/Docker.groovy: `docker.image(id)`
 *    (the id checked like docker-commons' ImageNameValidator), `Image.imageName()`,
 *    `Image.inside(args = '') {}` — `docker inspect -f .` through `sh`, `pull()` when the image
 *    is not local, then `withDockerContainer(image:, args:, toolName:)` —, `Image.pull()`
 *    (`sh 'docker pull "$JD_TO_PULL"'`), `withRegistry(url, credentialsId = null) {}`
 *    (DOCKER_REGISTRY_URL + `withDockerRegistry`), and the implicit `node {}` when no node is
 *    open;
 *  - WithContainerStep.java (`withDockerContainer`): the environment handed to the container
 *    is the step's minus the agent's own and minus PATH; the workspace and its @tmp sibling
 *    are mounted at the same paths; `docker run -t -d -u <id -u>:<id -g> <args tokenized> -w
 *    <ws> -v <ws>:<ws>:rw,z -v <tmp>:<tmp>:rw,z -e K=V… <image> cat`; `docker top <id> -eo
 *    pid,comm` must show `cat` (an ENTRYPOINT that ignores its arguments gets the plugin's
 *    error message); every launch in the body is prefixed `docker exec [--workdir <cwd>]
 *    --env K=V… <id>` (Decorator; docker >= 17.12 assumed, so --env and --workdir);
 *    at the end `docker stop --time=1 <id>` and `docker rm -f --volumes <id>`
 *    (client/DockerClient.java);
 *  - RegistryEndpointStep.java (`withDockerRegistry`) with docker-commons-plugin's
 *    RegistryKeyMaterialFactory.java: with a credentialsId, a fresh 0700 directory in the
 *    workspace's @tmp, `docker login -u USER -p PASSWORD URL` with DOCKER_CONFIG pointing at it,
 *    DOCKER_CONFIG set for the body, the directory deleted afterwards; without one, nothing.
 * Not modelled: docker version probing, agents that run in a container (--volumes-from),
 * copying ~/.docker/config.json into the login directory, Windows, `withServer`, `withTool`,
 * `build`, `run`/`withRun`. The docker CLI runs for real: the agent's PATH decides which —
 * the FAKE one in tests/groovy/shims, or /usr/bin/docker against a local engine.
 */
class DockerStandIn {
    // docker-commons ImageNameValidator: VALID_NAME_COMPONENT, VALID_TAG, VALID_DIGEST.
    static final String NAME = /[a-zA-Z0-9]+((\.|_|__|-+)[a-zA-Z0-9]+)*/
    static final String TAG = /:[a-zA-Z0-9_]([a-zA-Z0-9_.-]){0,127}/
    static final String DIGEST = /@[a-z0-9]+([+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+/

    final PipelineHarness h

    DockerStandIn(PipelineHarness harness) {
        h = harness
    }

    // ------------------------------------------------------------ Docker.groovy

    def withRegistry(String url, Closure body) {
        return withRegistry(url, null, body)
    }

    def withRegistry(String url, String credentialsId, Closure body) {
        return implicitNode {
            Map entry = h.record('docker.withRegistry', [url: url, credentialsId: credentialsId])
            h.block(entry, [:]) {
                h.withEnv(["DOCKER_REGISTRY_URL=${url}".toString()]) {
                    withDockerRegistry([url: url, credentialsId: credentialsId,
                                        toolName: h.envValue('DOCKER_TOOL_NAME')], body)
                }
            }
        }
    }

    DockerImage image(String id) {
        h.record('docker.image', [id: id])
        String problem = checkUserAndRepo(id)
        if (problem != null) {
            // ImageNameValidator.checkUserAndRepo throws FormValidation, an IOException.
            throw new IOException(problem)
        }
        return new DockerImage(this, id)
    }

    /** Docker.node: the body as is inside a node, else in `node {}` (any agent). */
    def implicitNode(Closure body) {
        if (h.envValue('NODE_NAME') != null) {
            return body()
        }
        return h.node([body] as Object[])
    }

    /** ImageNameValidator.splitUserAndRepo + validateUserAndRepo; null when valid. */
    static String checkUserAndRepo(String userAndRepo) {
        String[] parts = new String[4]
        int slash = userAndRepo.lastIndexOf('/')
        int tagAt = userAndRepo.lastIndexOf(':')
        int digestAt = userAndRepo.lastIndexOf('@')
        if (tagAt == -1 && slash == -1 && digestAt == -1) {
            parts[1] = userAndRepo
        } else if (tagAt < slash) {
            parts[0] = userAndRepo.substring(0, slash)
            parts[1] = userAndRepo.substring(slash + 1)
        } else {
            if (slash != -1) {
                parts[0] = userAndRepo.substring(0, slash)
                parts[1] = userAndRepo.substring(slash + 1)
            }
            if (digestAt > 0) {
                int start = slash > 0 ? slash + 1 : 0
                String name = userAndRepo.substring(start, digestAt)
                parts[1] = name
                int t = name.lastIndexOf(':')
                if (t > 0) {
                    parts[1] = name.substring(0, t)
                    parts[2] = name.substring(t)
                }
                parts[3] = userAndRepo.substring(digestAt)
            } else if (tagAt > 0) {
                int start = slash > 0 ? slash + 1 : 0
                parts[1] = userAndRepo.substring(start, tagAt)
                parts[2] = userAndRepo.substring(tagAt)
            }
        }
        if (!parts[1]) {
            return 'Missing name.'
        }
        if (!(parts[1] ==~ NAME)) {
            return "Name must follow the pattern '^${NAME}\$'"
        }
        if (parts[2] && !(parts[2] ==~ TAG)) {
            return "Tag must follow the pattern '^${TAG}'"
        }
        if (parts[3] && !(parts[3] ==~ DIGEST)) {
            return "Digest must follow the pattern '^${DIGEST}\$'"
        }
        return null
    }

    /** DockerRegistryEndpoint.imageName: the id, prefixed with DOCKER_REGISTRY_URL's host. */
    String qualified(String id) {
        String url = h.envValue('DOCKER_REGISTRY_URL')
        if (!url) {
            return id
        }
        URI uri = new URI(url)
        String host = uri.port > 0 ? "${uri.host}:${uri.port}" : uri.host
        return id.startsWith(host) ? id : "${host}/${id}".toString()
    }

    // ------------------------------------------------------------ the steps

    /** RegistryEndpointStep + RegistryKeyMaterialFactory. */
    def withDockerRegistry(Map m, Closure body) {
        Map entry = h.record('withDockerRegistry', [url: m.url, credentialsId: m.credentialsId])
        if (!m.credentialsId) {
            return h.block(entry, [:], body)
        }
        Map stored = h.credentials[m.credentialsId.toString()]
        if (stored == null) {
            throw new AbortException("Could not find credentials matching ${m.credentialsId}")
        }
        File dir = new File(tempDir(h.cwd()), UUID.randomUUID().toString())
        dir.mkdirs()
        dir.setReadable(false, false)
        dir.setWritable(false, false)
        dir.setExecutable(false, false)
        dir.setReadable(true, true)
        dir.setWritable(true, true)
        dir.setExecutable(true, true)
        Map<String, String> env = h.processEnv()
        env.DOCKER_CONFIG = dir.path
        Map login = launch(env, [executable(env), 'login', '-u', stored.username.toString(), '-p',
                                 stored.password.toString(), m.url.toString()])
        // The listener gets docker's stdout; the command line itself is masked in Jenkins' log.
        h.appendLog(h.ctx.get().branch, login.stdout.trim())
        if (login.code != 0) {
            dir.deleteDir()
            throw new AbortException('docker login failed')
        }
        try {
            return h.block(entry, h.withOverlay([DOCKER_CONFIG: dir.path]), body)
        } finally {
            dir.deleteDir()
        }
    }

    /** WithContainerStep.Execution.start, its Callback and DockerClient. */
    def withDockerContainer(Map m, Closure body) {
        String image = m.image.toString()
        String args = (m.args ?: '').toString()
        File ws = h.cwd()
        ws.mkdirs() // "otherwise it may be owned by root when created for -v"
        File tmp = tempDir(ws)
        tmp.mkdirs()
        Map<String, String> env = h.processEnv()
        String docker = executable(env)
        List<String> reduced = reducedEnv(env)
        String branch = h.ctx.get().branch
        h.appendLog(branch, "${h.envValue('NODE_NAME')} does not seem to be running inside a container")
        List<String> run = [docker, 'run', '-t', '-d', '-u', whoAmI(env)]
        run.addAll(tokenize(args))
        run.addAll(['-w', ws.path, '-v', "${ws.path}:${ws.path}:rw,z".toString(),
                    '-v', "${tmp.path}:${tmp.path}:rw,z".toString()])
        for (String e : reduced) {
            run.addAll(['-e', e])
        }
        run.addAll([image, 'cat'])
        Map entry = h.record('withDockerContainer', [
            image: image, args: args, user: run[5], env: reduced.collect { it.substring(0, it.indexOf('=')) },
            volumes: [ws.path, tmp.path],
        ])
        Map started = launch(env, run)
        if (started.code != 0) {
            throw new IOException("Failed to run image '${image}'. Error: ${started.stderr.trim()}")
        }
        String id = started.stdout.trim()
        entry.container = id
        Map top = launch(env, [docker, 'top', id, '-eo', 'pid,comm'])
        List<String> commands = top.stdout.readLines().drop(1).collect { String line ->
            List<String> cols = line.trim().split(/\s+/) as List<String>
            cols.size() > 1 ? cols[1] : ''
        }
        if (!('cat' in commands)) {
            h.appendLog(branch, 'ERROR: The container started but didn\'t run the expected command. ' +
                'Please double check your ENTRYPOINT does execute the command passed as docker run argument, ' +
                'as required by official docker images (see https://github.com/docker-library/official-images#consistency for entrypoint consistency requirements).\n' +
                'Alternatively you can force image entrypoint to be disabled by adding option `--entrypoint=\'\'`.')
        }
        try {
            return h.block(entry, [container: [id: id, image: image, docker: docker, ws: ws.path]], body)
        } finally {
            Map stop = launch(env, [docker, 'stop', '--time=1', id])
            if (stop.code != 0) {
                throw new IOException("Failed to kill container '${id}'.")
            }
            Map rm = launch(env, [docker, 'rm', '-f', '--volumes', id])
            if (rm.code != 0) {
                throw new IOException("Failed to rm container '${id}'.")
            }
        }
    }

    /** WithContainerStep.Decorator.launch: `cmd` as the body's steps start it, in the container. */
    static List<String> execPrefixed(Map container, List<String> cmd, File cwd, Map<String, String> env) {
        List<String> prefix = [container.docker.toString(), 'exec']
        if (cwd.path != container.ws) {
            prefix.addAll(['--workdir', cwd.path])
        }
        for (String e : reducedEnv(env)) {
            prefix.addAll(['--env', e])
        }
        prefix << container.id.toString()
        return prefix + cmd
    }

    /**
     * The step's environment minus the agent's own (Computer.getEnvironment: this JVM's here),
     * minus PATH: what reaches the container, sorted as the plugin's TreeSet sorts it.
     */
    static List<String> reducedEnv(Map<String, String> env) {
        Map<String, String> host = System.getenv()
        List<String> out = []
        env.each { String k, String v ->
            if (k != 'PATH' && k && host[k] != v) {
                out << "${k}=${v}".toString()
            }
        }
        return out.sort()
    }

    /** hudson.util.QuotedStringTokenizer, as ArgumentListBuilder.addTokenized uses it. */
    static List<String> tokenize(String text) {
        List<String> tokens = []
        StringBuilder current = null
        Character quote = null
        for (int i = 0; i < text.length(); i++) {
            char c = text.charAt(i)
            if (quote != null) {
                if (c == quote) {
                    quote = null
                } else if (c == '\\' as char && quote == '"' as char && i + 1 < text.length()) {
                    current.append(text.charAt(++i))
                } else {
                    current.append(c)
                }
            } else if (Character.isWhitespace(c)) {
                if (current != null) {
                    tokens << current.toString()
                    current = null
                }
            } else {
                current = current ?: new StringBuilder()
                if (c == '"' as char || c == '\'' as char) {
                    quote = c
                } else {
                    current.append(c)
                }
            }
        }
        if (current != null) {
            tokens << current.toString()
        }
        return tokens
    }

    /** WorkspaceList.tempDir: the `<dir>@tmp` sibling. */
    static File tempDir(File dir) {
        return new File("${dir.path}@tmp")
    }

    /** DockerTool.getExecutable with no tool: `docker`, found on the step's PATH. */
    static String executable(Map<String, String> env) {
        for (String dir : (env.PATH ?: '').split(File.pathSeparator)) {
            File candidate = new File(dir, 'docker')
            if (dir && candidate.isFile() && candidate.canExecute()) {
                return candidate.path
            }
        }
        return 'docker'
    }

    /** DockerClient.whoAmI: `id -u`:`id -g` of the agent. */
    String whoAmI(Map<String, String> env) {
        return "${launch(env, ['id', '-u']).stdout.trim()}:${launch(env, ['id', '-g']).stdout.trim()}"
    }

    /** One docker CLI launch from the plugin's Java side (not a `sh` step), off the CPS lock. */
    Map launch(Map<String, String> env, List<String> command) {
        return h.outsideCps {
            ProcessBuilder builder = new ProcessBuilder(command).directory(h.cwd())
            builder.environment().clear()
            builder.environment().putAll(env)
            Process process = builder.start()
            process.outputStream.close()
            StringBuffer err = new StringBuffer()
            Thread pump = Thread.start { err.append(process.errorStream.getText('UTF-8')) }
            String out = process.inputStream.getText('UTF-8')
            process.waitFor()
            pump.join()
            [code: process.exitValue(), stdout: out, stderr: err.toString()]
        }
    }
}

/** Docker.Image: id, imageName(), inside(), pull(). */
class DockerImage {
    final DockerStandIn docker
    final String id

    DockerImage(DockerStandIn docker, String id) {
        this.docker = docker
        this.id = id
    }

    String imageName() {
        return docker.qualified(id)
    }

    def inside(Closure body) {
        return inside('', body)
    }

    def inside(String args, Closure body) {
        PipelineHarness h = docker.h
        return docker.implicitNode {
            Map entry = h.record('docker.inside', [id: id, args: args])
            h.block(entry, [:]) {
                String toRun = imageName()
                h.withEnv(["JD_ID=${id}".toString(), "JD_TO_RUN=${toRun}".toString()]) {
                    if (toRun != id && h.sh([script: 'docker inspect -f . "$JD_ID"', returnStatus: true]) == 0) {
                        toRun = id // "Can run it without registry prefix, because it was locally built."
                    } else if (h.sh([script: 'docker inspect -f . "$JD_TO_RUN"', returnStatus: true]) != 0) {
                        pull() // "withDockerContainer requires the image to be available locally"
                    }
                }
                docker.withDockerContainer([image: toRun, args: args, toolName: h.envValue('DOCKER_TOOL_NAME')], body)
            }
        }
    }

    void pull() {
        PipelineHarness h = docker.h
        docker.implicitNode {
            Map entry = h.record('docker.pull', [id: id])
            h.block(entry, [:]) {
                h.withEnv(["JD_TO_PULL=${imageName()}".toString()]) {
                    h.sh('docker pull "$JD_TO_PULL"')
                }
            }
        }
    }
}
