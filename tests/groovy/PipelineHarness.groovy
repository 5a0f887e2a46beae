import groovy.json.JsonOutput
import hudson.AbortException
import org.jenkinsci.plugins.workflow.steps.FlowInterruptedException
import org.codehaus.groovy.control.CompilerConfiguration
import org.codehaus.groovy.control.customizers.ImportCustomizer

import java.nio.file.FileSystems
import java.nio.file.Files
import java.nio.file.NoSuchFileException
import java.nio.file.Path
import java.nio.file.PathMatcher
import java.util.concurrent.TimeUnit
import java.util.concurrent.atomic.AtomicInteger
import java.util.concurrent.locks.ReentrantLock
import java.util.stream.Collectors

/**
 * A pipeline runner for tests, in the spirit of JenkinsPipelineUnit, on Groovy 2.4 (the version
 * Jenkins embeds).
 *
 * It binds the pipeline steps a library uses, loads vars/<step>.groovy and Jenkinsfiles with
 * GroovyShell, and records every step call (a call stack with sequence numbers, the branch, the
 * stage path and the node each call ran in). Steps behave like Jenkins' where it matters:
 *  - node(label) picks the first configured agent whose labels satisfy the label expression and
 *    gives it a workspace (workspace@2 when busy); the agent's env applies inside the block;
 *  - sh runs FOR REAL, as durable-task's BourneShellScript.launchWithCookie does: the script is
 *    written to <ws>@tmp/durable-N/script.sh; a script starting with '#!' is chmod 0755'd and
 *    exec'd itself (so it fails on a noexec workspace), any other runs as `sh -xe script.sh`;
 *    in the workspace, with the environment of the build, agent, withEnv and withCredentials;
 *  - node(label) with no agent for the label: Jenkins' queue waits for ever. Inside timeout the
 *    wait ends when the timeout does (virtual time: at once), as TimeoutStepExecution.cancel
 *    does, with FlowInterruptedException (ExceededTimeout); outside any timeout the harness
 *    fails the run (the build would hang);
 *  - timeout (workflow-basic-steps TimeoutStep/TimeoutStepExecution), retry with conditions
 *    (RetryStep; agent() is workflow-durable-task-step's AgentErrorCondition: an agent lost
 *    mid-step, here an agent with `loseAfter: N` sh steps), milestone (pipeline-milestone-step
 *    MilestoneStepExecution: forbidden in parallel; a build older than the last one that passed
 *    the same ordinal in the job is cancelled with NOT_BUILT; the record is per job and lives
 *    across the scenarios of one JVM), lock (lockable-resources LockStep: resource; absent
 *    when the scenario's `plugins` lack 'lockable-resources', then a NoSuchMethodError as
 *    CpsScript throws);
 *  - parallel runs branches on real threads; like the CPS VM, Groovy code runs one thread at a
 *    time (a lock released only while a step blocks: sh, waiting for branches). failFast
 *    interrupts the other branches; a failing branch fails the parallel step;
 *  - withCredentials binds secrets from the harness' credential store as environment variables
 *    only; error and failing sh throw hudson.AbortException;
 *  - `docker` (Docker Pipeline) is DockerStandIn: docker.image(id).inside(args) {} starts a
 *    container with the docker CLI on the agent's PATH and runs the body's sh steps through
 *    `docker exec`, as the plugin's launcher decorator does; pwd(tmp: true) is `<cwd>@tmp`.
 * Every call records the container image it ran in (`container`, null on the agent itself).
 * Secrets are NOT masked in the log, so tests can prove the library never prints them.
 */
class PipelineHarness {
    final File root
    final File library
    final List<Map> agents
    final Map<String, Map> credentials
    final Map params
    final Map<String, String> globalEnv = Collections.synchronizedMap([:])
    final File source
    final String jobName
    final File logFile
    final File agentsRoot
    final Set<String> plugins
    final String commit
    final String gitUrl
    /** pipeline-milestone-step's per-job record: job -> ordinal -> last build number passed. */
    static final Map<String, Map<Integer, Integer>> MILESTONES = Collections.synchronizedMap([:])
    /** lockable-resources: resource names held now, and each one's holders in order. */
    final Map<String, List<Integer>> lockHistory = Collections.synchronizedMap([:])
    final Map<String, Integer> shCounts = Collections.synchronizedMap([:])
    int milestoneOrdinal = -1
    /** Whose milestones these are: the scenario's `job` when it names one (scenarios that play
     *  builds of one job), else this scenario alone. */
    final String milestoneJob

    final List<Map> calls = Collections.synchronizedList([])
    final List<Map> stepResults = Collections.synchronizedList([])
    final AtomicInteger seq = new AtomicInteger()
    final StringBuffer log = new StringBuffer()
    final ReentrantLock cps = new ReentrantLock()
    final ThreadLocal<Map> ctx = new ThreadLocal<Map>()
    final Set<String> busyWorkspaces = Collections.synchronizedSet(new HashSet<String>())
    final Map currentBuild = Collections.synchronizedMap([
        result: null, currentResult: 'SUCCESS', number: 1, displayName: '#1', description: null,
    ])
    final Binding binding = new Binding()
    private final CompilerConfiguration compiler = new CompilerConfiguration()

    PipelineHarness(Map scenario) {
        root = new File(scenario.workdir.toString())
        library = new File(scenario.library.toString())
        agents = (List<Map>) (scenario.agents ?: [[name: 'built-in', labels: ['built-in'], env: [:]]])
        credentials = (Map<String, Map>) (scenario.credentials ?: [:])
        params = new LinkedHashMap(scenario.params ?: [:])
        source = scenario.source ? new File(scenario.source.toString()) : null
        jobName = (scenario.job ?: 'job').toString()
        milestoneJob = scenario.job ? jobName : root.path
        logFile = new File(root, 'console.log')
        agentsRoot = new File((scenario.agentsRoot ?: new File(root, 'agents').path).toString())
        plugins = ((List) (scenario.plugins ?: ['lockable-resources', 'pipeline-milestone-step'])).collect {
            it.toString() } as Set<String>
        commit = (scenario.commit ?: '3f9c2a7be41d05c6e8a9b0c1d2e3f405a6b7c8d9').toString()
        // GitSCM's GIT_URL: the remote's URL as configured (userinfo and all).
        gitUrl = (scenario.gitUrl ?: 'https://ci-bot:clone-token@git.example.com/team/app.git').toString()
        // RunWrapper.getStartTimeInMillis: when the build started (fixed, so tests can expect it).
        currentBuild.startTimeInMillis = (scenario.startTimeInMillis ?: 1764732645123L)
        root.mkdirs()
        logFile.text = ''
        globalEnv.putAll([
            JOB_NAME: jobName, BUILD_NUMBER: '1', BUILD_ID: '1', BUILD_TAG: "jenkins-${jobName}-1".toString(),
        ])
        ((Map) (scenario.env ?: [:])).each { k, v -> globalEnv[k.toString()] = v?.toString() }
        ImportCustomizer imports = new ImportCustomizer()
        imports.addImports('org.jenkinsci.plugins.workflow.libs.Library')
        compiler.addCompilationCustomizers(imports)
        compiler.scriptBaseClass = 'CpsScriptStandIn'
        bindSteps()
        loadLibraryVars()
    }

    // ---------------------------------------------------------------- running

    /** Run `body` as the pipeline's main thread; returns the report (see report()). */
    Map run(Closure body) {
        ctx.set([branch: null, stages: [], overlays: [], depth: 0])
        cps.lock()
        Map outcome = [:]
        try {
            outcome.returned = body()
            currentBuild.result = currentBuild.result ?: 'SUCCESS'
        } catch (Throwable e) {
            currentBuild.result = 'FAILURE'
            outcome.error = e.message
            outcome.errorClass = e.getClass().name
            if (!(e instanceof AbortException)) {
                StringWriter trace = new StringWriter()
                e.printStackTrace(new PrintWriter(trace))
                outcome.trace = trace.toString()
            }
            appendLog(null, "ERROR: ${e.message}")
        } finally {
            cps.unlock()
        }
        return report(outcome)
    }

    Map runStep(String name, Map args) {
        return run { binding.getVariable(name).call(args) }
    }

    Map runJenkinsfile(File file) {
        Script script = new GroovyShell(this.class.classLoader, binding, compiler).parse(file)
        return run { script.run() }
    }

    Map report(Map outcome) {
        return jsonable([
            result     : currentBuild.result,
            returned   : outcome.returned,
            error      : outcome.error,
            errorClass : outcome.errorClass,
            trace      : outcome.trace,
            calls      : new ArrayList(calls),
            stepResults: new ArrayList(stepResults),
            params     : params,
            log        : log.toString(),
        ])
    }

    // ---------------------------------------------------------------- recording

    Map record(String name, Map args) {
        Map c = ctx.get()
        Map entry = [
            seq   : seq.incrementAndGet(),
            name  : name,
            args  : args,
            branch: c.branch,
            label : c.label,
            agent : c.agent?.name,
            stages: new ArrayList(c.stages),
            depth : c.depth,
            container: ((Map) c.container)?.image,
            // The block steps this call runs in, outermost first (timeout, node, retry, ...).
            blocks: new ArrayList((List) (c.blocks ?: [])),
        ]
        calls << entry
        return entry
    }

    /** Run a block step's body with a new context; records where it ended and how. */
    def block(Map entry, Map changes, Closure body) {
        Map outer = ctx.get()
        Map inner = new LinkedHashMap(outer)
        inner.putAll(changes)
        inner.depth = outer.depth + 1
        inner.blocks = ((List) (outer.blocks ?: [])) + [entry.name]
        ctx.set(inner)
        try {
            def value = body()
            entry.status = 'SUCCESS'
            return value
        } catch (Throwable e) {
            entry.status = 'FAILURE'
            entry.error = e.message
            throw e
        } finally {
            ctx.set(outer)
            entry.end = seq.incrementAndGet()
        }
    }

    void appendLog(String branch, String line) {
        String text = (branch ? "[${branch}] " : '') + line
        synchronized (log) {
            log.append(text).append('\n')
            logFile.append(text + '\n')
        }
    }

    /** Let other branches run while this thread blocks (like a CPS step waiting). */
    def outsideCps(Closure body) {
        int holds = cps.holdCount
        holds.times { cps.unlock() }
        try {
            return body()
        } finally {
            holds.times { cps.lock() }
        }
    }

    // ---------------------------------------------------------------- environment

    String envValue(String name) {
        List<Map> overlays = (List<Map>) ctx.get().overlays
        for (int i = overlays.size() - 1; i >= 0; i--) {
            if (overlays[i].containsKey(name)) {
                return overlays[i][name]
            }
        }
        return globalEnv[name]
    }

    Map<String, String> processEnv() {
        Map<String, String> env = new LinkedHashMap<String, String>(System.getenv())
        List<Map> layers = [globalEnv] + (List<Map>) ctx.get().overlays
        for (Map layer : layers) {
            layer.each { k, v ->
                String key = k.toString()
                if (key.startsWith('PATH+')) {
                    env.PATH = "${v}${File.pathSeparator}${env.PATH ?: ''}".toString()
                } else if (v != null) {
                    env[key] = v.toString()
                }
            }
        }
        return env
    }

    Map withOverlay(Map values) {
        return [overlays: ((List) ctx.get().overlays) + [values]]
    }

    // ---------------------------------------------------------------- agents

    static boolean labelMatches(Collection<String> labels, String expression) {
        if (!expression?.trim()) {
            return true
        }
        return expression.split(/\|\|/).any { String alternative ->
            alternative.split('&&').every { String term ->
                String t = term.trim().replaceAll(/^\(|\)$/, '').trim()
                t.startsWith('!') ? !(t.substring(1).trim() in labels) : (t in labels)
            }
        }
    }

    File allocateWorkspace(Map agent) {
        File base = new File(agentsRoot, "${agent.name}/workspace/${jobName}")
        synchronized (busyWorkspaces) {
            for (int n = 1; ; n++) {
                File ws = n == 1 ? base : new File("${base.path}@${n}")
                if (busyWorkspaces.add(ws.path)) {
                    ws.mkdirs()
                    return ws
                }
            }
        }
    }

    /** FilePath.child(relOrAbsolute): an absolute path stays as it is. */
    File resolve(String path) {
        File file = new File(path)
        return file.isAbsolute() ? file : new File(cwd(), path)
    }

    File cwd() {
        File dir = (File) ctx.get().cwd
        if (dir == null) {
            throw new AbortException(
                'Required context class hudson.FilePath is missing: perhaps you forgot to surround the step with node')
        }
        return dir
    }

    // ---------------------------------------------------------------- steps

    void bindSteps() {
        binding.setVariable('env', new EnvProxy(this))
        binding.setVariable('params', params)
        binding.setVariable('currentBuild', currentBuild)
        binding.setVariable('scm', [$class: 'HarnessSCM', source: source?.path])
        binding.setVariable('none', 'none')
        binding.setVariable('any', 'any')

        binding.setVariable('node', { Object[] a -> node(a) })
        binding.setVariable('stage', { Object name, Closure body -> stage(name.toString(), body) })
        binding.setVariable('parallel', { Map branches -> parallel(branches) })
        binding.setVariable('sh', { Object a -> sh(a) })
        binding.setVariable('echo', { Object message ->
            record('echo', [message: message?.toString()])
            appendLog(ctx.get().branch, message?.toString())
        })
        binding.setVariable('error', { Object message ->
            record('error', [message: message?.toString()])
            throw new AbortException(message?.toString())
        })
        binding.setVariable('withEnv', { List entries, Closure body -> withEnv(entries, body) })
        binding.setVariable('withCredentials', { List bindings, Closure body -> withCredentials(bindings, body) })
        binding.setVariable('usernamePassword', { Map m -> [$class: 'UsernamePasswordMultiBinding'] + m })
        binding.setVariable('string', { Map m ->
            m.credentialsId ? ([$class: 'StringBinding'] + m) : parameter('string', m)
        })
        binding.setVariable('booleanParam', { Map m -> parameter('booleanParam', m) })
        binding.setVariable('libraryResource', { Object a -> libraryResource(a) })
        binding.setVariable('readFile', { Object a -> readFile(a) })
        binding.setVariable('writeFile', { Map m -> writeFile(m) })
        binding.setVariable('fileExists', { Object path ->
            record('fileExists', [file: path.toString()])
            resolve(path.toString()).exists()
        })
        binding.setVariable('dir', { Object path, Closure body ->
            Map entry = record('dir', [path: path.toString()])
            block(entry, [cwd: resolve(path.toString())], body)
        })
        binding.setVariable('deleteDir', {
            record('deleteDir', [:])
            cwd().deleteDir()
        })
        binding.setVariable('checkout', { Object scm -> checkout(scm) })
        binding.setVariable('stash', { Map m -> stash(m) })
        binding.setVariable('unstash', { Object a -> unstash(a) })
        binding.setVariable('isUnix', { -> true })
        binding.setVariable('pwd', { Object[] a ->
            // workflow-basic-steps PwdStep: cwd, or WorkspaceList.tempDir(cwd) with tmp: true.
            boolean tmp = a.length == 1 && a[0] instanceof Map && ((Map) a[0]).tmp
            record('pwd', [tmp: tmp])
            tmp ? DockerStandIn.tempDir(cwd()).path : cwd().path
        })
        DockerStandIn docker = new DockerStandIn(this)
        binding.setVariable('docker', docker)
        binding.setVariable('withDockerRegistry', { Map m, Closure body -> docker.withDockerRegistry(m, body) })
        binding.setVariable('withDockerContainer', { Map m, Closure body -> docker.withDockerContainer(m, body) })
        binding.setVariable('timeout', { Object[] a ->
            // Declarative `options { timeout(...) }` has no body: an option, not a step call.
            a.length == 2 ? timeout((Map) a[0], (Closure) a[1]) : [timeout: a[0]]
        })
        binding.setVariable('retry', { Object[] a -> retry(a) })
        binding.setVariable('nonresumable', { -> [condition: 'nonresumable'] })
        binding.setVariable('milestone', { Object[] a -> milestone(a) })
        if ('lockable-resources' in plugins) {
            binding.setVariable('lock', { Object[] a -> lock(a) })
        }
        binding.setVariable('timestamps', { Object[] a -> wrapper('timestamps', a) })

        // Declarative Pipeline, enough of it to run `pipeline { agent none; stages { ... } }`.
        binding.setVariable('pipeline', { Closure body -> wrapper('pipeline', [body] as Object[]) })
        binding.setVariable('agent', { Object[] a ->
            // No argument: the retry condition agent() (AgentErrorCondition); with one, the
            // Declarative `agent none` / `agent any`.
            a.length == 0 ? [condition: 'agent'] : record('agent', [value: a[0]?.toString()])
        })
        binding.setVariable('options', { Closure body -> body() })
        binding.setVariable('parameters', { Closure body -> body() })
        binding.setVariable('stages', { Closure body -> body() })
        binding.setVariable('steps', { Closure body -> body() })
        binding.setVariable('script', { Closure body -> body() })
        binding.setVariable('buildDiscarder', { Object a -> [buildDiscarder: a] })
        binding.setVariable('logRotator', { Map m -> [logRotator: m] })
        binding.setVariable('disableConcurrentBuilds', { Object[] a -> [disableConcurrentBuilds: true] })
    }

    /** vars/<name>.groovy becomes a step `name(...)` calling its call(). */
    void loadLibraryVars() {
        File vars = new File(library, 'vars')
        vars.listFiles()?.findAll { it.name.endsWith('.groovy') }?.sort()?.each { File file ->
            String name = file.name - '.groovy'
            Script script = new GroovyShell(this.class.classLoader, binding, compiler).parse(file)
            binding.setVariable(name, { Object[] a ->
                Map entry = record(name, [args: a.length == 1 ? a[0] : a.toList()])
                def value = block(entry, [:]) { script.invokeMethod('call', a) }
                stepResults << [name: name, seq: entry.seq, returned: value]
                value
            })
        }
    }

    def node(Object[] a) {
        String label = a.length == 2 ? a[0]?.toString() : null
        Closure body = (Closure) a[-1]
        Map entry = record('node', [label: label])
        Map agent = agents.find { Map candidate ->
            !candidate.lost && labelMatches((List<String>) candidate.labels, label)
        }
        if (agent == null) {
            // Jenkins' queue: 'Still waiting to schedule task' / 'There are no nodes with the
            // label ‘X’', for ever. Only an enclosing timeout ends the wait.
            appendLog(ctx.get().branch, 'Still waiting to schedule task')
            appendLog(ctx.get().branch, "There are no nodes with the label ‘${label}’")
            entry.status = 'WAITING'
            Map timeoutEntry = (Map) ctx.get().timeout
            if (timeoutEntry == null) {
                entry.end = seq.incrementAndGet()
                throw new AbortException(
                    "harness: node('${label}') has no agent and no enclosing timeout: Jenkins would wait for ever")
            }
            timeoutEntry.expired = true
            appendLog(ctx.get().branch, 'Cancelling nested steps due to timeout')
            entry.end = seq.incrementAndGet()
            throw new FlowInterruptedException('ABORTED', ['Timeout has been exceeded'])
        }
        entry.agent = agent.name
        File ws = allocateWorkspace(agent)
        entry.workspace = ws.path
        appendLog(ctx.get().branch, "Running on ${agent.name} in ${ws}")
        Map nodeEnv = [NODE_NAME: agent.name, NODE_LABELS: ((List) agent.labels).join(' '), WORKSPACE: ws.path]
        nodeEnv.putAll((Map) (agent.env ?: [:]))
        Map changes = withOverlay(nodeEnv)
        changes.putAll([agent: agent, label: label, workspace: ws, cwd: ws])
        try {
            return block(entry, changes, body)
        } finally {
            busyWorkspaces.remove(ws.path)
        }
    }

    def stage(String name, Closure body) {
        Map entry = record('stage', [name: name])
        appendLog(ctx.get().branch, "[Pipeline] stage (${name})")
        return block(entry, [stages: ((List) ctx.get().stages) + [name]], body)
    }

    def parallel(Map given) {
        Map branches = new LinkedHashMap(given)
        boolean failFast = branches.remove('failFast') ?: false
        Map entry = record('parallel', [branches: branches.keySet().collect { it.toString() }, failFast: failFast])
        Map results = Collections.synchronizedMap(new LinkedHashMap())
        Map<String, Throwable> failures = Collections.synchronizedMap(new LinkedHashMap<String, Throwable>())
        Map parent = ctx.get()
        List<Thread> threads = []
        branches.each { Object key, Object value ->
            String name = key.toString()
            Closure body = (Closure) value
            Map branchCtx = new LinkedHashMap(parent)
            branchCtx.branch = name
            branchCtx.depth = parent.depth + 1
            threads << new Thread({
                ctx.set(branchCtx)
                cps.lock()
                try {
                    Map branchEntry = record('branch', [name: name])
                    try {
                        results[name] = block(branchEntry, [:], body)
                    } catch (Throwable e) {
                        failures[name] = e
                        appendLog(name, "Failed in branch ${name}: ${e.message}")
                        if (failFast) {
                            threads.each { Thread t -> if (t != Thread.currentThread()) t.interrupt() }
                        }
                    }
                } finally {
                    cps.unlock()
                }
            } as Runnable, "branch ${name}")
        }
        outsideCps {
            threads.each { Thread t -> t.start() }
            threads.each { Thread t -> t.join() }
        }
        entry.end = seq.incrementAndGet()
        if (failures) {
            entry.status = 'FAILURE'
            Map.Entry<String, Throwable> first = failures.entrySet().iterator().next()
            throw first.value
        }
        entry.status = 'SUCCESS'
        return results
    }

    def sh(Object a) {
        Map opts = a instanceof Map ? (Map) a : [script: a.toString()]
        String script = opts.script.toString()
        boolean returnStdout = opts.returnStdout ?: false
        boolean returnStatus = opts.returnStatus ?: false
        Map entry = record('sh', [script: script, returnStdout: returnStdout, returnStatus: returnStatus,
                                  label: opts.label?.toString()])
        Map agentNow = (Map) ctx.get().agent
        if (agentNow?.loseAfter != null) {
            int done = shCounts.merge(agentNow.name.toString(), 1, { x, y -> x + y })
            if (done > (agentNow.loseAfter as int)) {
                // Gone for good: what workflow-durable-task-step sees is a closed channel, for
                // this step and every later one on that agent (the node block's own cleanup too).
                agentNow.lost = true
                entry.exitCode = null
                throw new AgentLostStandIn(agentNow.name.toString())
            }
        }
        File ws = cwd()
        File tmp = new File("${ws.path}@tmp/durable-${entry.seq}")
        tmp.mkdirs()
        File file = new File(tmp, 'script.sh')
        file.text = script
        file.setExecutable(true)
        // durable-task BourneShellScript: no '#!' -> `'<shell>' -xe script.sh`; with one the file
        // itself is exec'd (chmod 0755 above), which a noexec workspace refuses.
        List<String> command = script.startsWith('#!') ? [file.path] : ['sh', '-xe', file.path]
        Map container = (Map) ctx.get().container
        if (container != null) {
            int own = command.size()
            command = DockerStandIn.execPrefixed(container, command, ws, processEnv())
            // The docker exec prefix, as the agent's process list shows it.
            entry.exec = command.take(command.size() - own)
        }
        ProcessBuilder builder = new ProcessBuilder(command).directory(ws)
        builder.environment().clear()
        builder.environment().putAll(processEnv())
        builder.redirectErrorStream(!returnStdout)
        String branch = ctx.get().branch
        Map outcome = outsideCps {
            Process process = startProcess(builder)
            process.outputStream.close()
            StringBuffer stdout = new StringBuffer()
            Thread pumpOut = Thread.start {
                process.inputStream.eachLine('UTF-8') { String line ->
                    if (returnStdout) {
                        stdout.append(line).append('\n')
                    } else {
                        appendLog(branch, line)
                    }
                }
            }
            Thread pumpErr = returnStdout ? Thread.start {
                process.errorStream.eachLine('UTF-8') { String line -> appendLog(branch, line) }
            } : null
            try {
                process.waitFor()
            } catch (InterruptedException e) {
                // The whole tree, as Jenkins kills a step's processes: `sh` and what it started.
                List children = process.toHandle().descendants().collect(Collectors.toList())
                process.destroy()
                children.each { it.destroy() }
                if (!process.waitFor(5, TimeUnit.SECONDS)) {
                    process.destroyForcibly()
                }
                children.each { it.destroyForcibly() }
                throw new AbortException('harness: interrupted (failFast: another branch failed)')
            } finally {
                pumpOut.join()
                pumpErr?.join()
                tmp.deleteDir()
            }
            [code: process.exitValue(), stdout: stdout.toString()]
        }
        entry.exitCode = outcome.code
        if (returnStatus) {
            return outcome.code
        }
        if (outcome.code != 0) {
            throw new AbortException("script returned exit code ${outcome.code}")
        }
        return returnStdout ? outcome.stdout : null
    }

    /**
     * ProcessBuilder.start, again on ETXTBSY: a fork of another branch's thread may still hold
     * a just-written script open for writing when this one exec's it (a JVM artefact, not
     * Jenkins': its agent writes the script long before the launcher exec's it).
     */
    static Process startProcess(ProcessBuilder builder) {
        for (int attempt = 1; ; attempt++) {
            try {
                return builder.start()
            } catch (IOException e) {
                if (attempt >= 20 || !e.message?.contains('error=26')) {
                    throw e
                }
                Thread.sleep(50)
            }
        }
    }

    def withEnv(List entries, Closure body) {
        Map values = [:]
        entries.each { Object item ->
            String text = item.toString()
            int eq = text.indexOf('=')
            if (eq <= 0) {
                throw new IllegalArgumentException("withEnv: '${text}' is not NAME=VALUE")
            }
            values[text.substring(0, eq)] = text.substring(eq + 1)
        }
        Map entry = record('withEnv', [env: entries.collect { it.toString() }])
        return block(entry, withOverlay(values), body)
    }

    def withCredentials(List bindings, Closure body) {
        Map values = [:]
        List described = []
        for (Object item : bindings) {
            Map b = (Map) item
            Map stored = credentials[b.credentialsId?.toString()]
            if (stored == null) {
                throw new AbortException("Could not find credentials entry with ID '${b.credentialsId}'")
            }
            if (b.$class == 'UsernamePasswordMultiBinding') {
                values[b.usernameVariable.toString()] = stored.username.toString()
                values[b.passwordVariable.toString()] = stored.password.toString()
            } else if (b.$class == 'StringBinding') {
                values[b.variable.toString()] = stored.secret.toString()
            } else {
                throw new AbortException("harness: unsupported credentials binding ${b}")
            }
            // Record ids and variable names only, never the secret.
            described << b.findAll { k, v -> k != '$class' } + [type: b.$class]
        }
        Map entry = record('withCredentials', [bindings: described])
        return block(entry, withOverlay(values), body)
    }

    def parameter(String type, Map definition) {
        String name = definition.name.toString()
        if (!params.containsKey(name)) {
            params[name] = definition.defaultValue
        }
        return [type: type] + definition
    }

    String libraryResource(Object a) {
        String path = a instanceof Map ? ((Map) a).resource.toString() : a.toString()
        record('libraryResource', [resource: path])
        File file = new File(library, "resources/${path}")
        if (!file.isFile()) {
            throw new AbortException("No such library resource ${path} could be found.")
        }
        return file.getText('UTF-8')
    }

    String readFile(Object a) {
        String path = a instanceof Map ? ((Map) a).file.toString() : a.toString()
        record('readFile', [file: path])
        File file = resolve(path)
        if (!file.isFile()) {
            throw new NoSuchFileException(file.path)
        }
        return file.getText('UTF-8')
    }

    void writeFile(Map m) {
        record('writeFile', [file: m.file.toString(), workspace: cwd().path])
        File file = resolve(m.file.toString())
        file.parentFile.mkdirs()
        file.setText(m.text?.toString() ?: '', 'UTF-8')
    }

    Map checkout(Object scm) {
        record('checkout', [scm: scm instanceof Map ? scm : scm?.toString()])
        String from = scm instanceof Map ? ((Map) scm).source : null
        if (!from) {
            throw new AbortException('harness: checkout needs the scenario\'s source directory')
        }
        copyTree(new File(from), cwd(), null)
        // GitSCM's checkout returns its build environment: GIT_COMMIT, GIT_BRANCH, ...
        return [GIT_COMMIT: commit, GIT_BRANCH: envValue('BRANCH_NAME'), GIT_URL: gitUrl]
    }

    void stash(Map m) {
        String name = m.name.toString()
        record('stash', [name: name, includes: m.includes])
        File store = new File(root, "stashes/${name}")
        store.deleteDir()
        PathMatcher matcher = FileSystems.default.getPathMatcher("glob:${m.includes ?: '**'}")
        copyTree(cwd(), store, matcher)
    }

    void unstash(Object a) {
        String name = a instanceof Map ? ((Map) a).name.toString() : a.toString()
        record('unstash', [name: name])
        File store = new File(root, "stashes/${name}")
        if (!store.isDirectory()) {
            throw new AbortException("No such saved stash '${name}'")
        }
        copyTree(store, cwd(), null)
    }

    /** workflow-basic-steps TimeoutStep(time, unit, activity) around its body. */
    def timeout(Map m, Closure body) {
        Map entry = record('timeout', [time: m.time, unit: (m.unit ?: 'MINUTES').toString(),
                                       activity: m.activity ?: false])
        appendLog(ctx.get().branch, "Timeout set to expire in ${m.time} ${(m.unit ?: 'MINUTES').toString().toLowerCase()}")
        return block(entry, [timeout: entry], body)
    }

    /**
     * workflow-basic-steps RetryStep(count, conditions): the body again on a failure, at most
     * count times; a FlowInterruptedException is never retried; with conditions, only a
     * failure one of them matches (agent(): AgentErrorCondition, an agent lost mid-step).
     */
    def retry(Object[] a) {
        Map opts = a[0] instanceof Map ? (Map) a[0] : [count: a[0]]
        Closure body = (Closure) a[-1]
        List conditions = (List) (opts.conditions ?: [])
        Map entry = record('retry', [count: opts.count, conditions: conditions.collect { ((Map) it).condition }])
        int left = opts.count as int
        return block(entry, [:]) {
            while (true) {
                try {
                    return body()
                } catch (FlowInterruptedException e) {
                    throw e
                } catch (Throwable e) {
                    left--
                    boolean matches = !conditions || (e instanceof AgentLostStandIn &&
                        conditions.any { ((Map) it).condition == 'agent' })
                    if (left <= 0 || !matches) {
                        throw e
                    }
                    appendLog(ctx.get().branch, "ERROR: ${e.message}")
                    appendLog(ctx.get().branch, 'Retrying')
                    entry.retried = (entry.retried ?: 0) + 1
                }
            }
        }
    }

    /** pipeline-milestone-step MilestoneStepExecution.processOrdinal + tryToPass. */
    def milestone(Object[] a) {
        Map opts = a.length > 0 && a[0] instanceof Map ? (Map) a[0] : [ordinal: a.length > 0 ? a[0] : null]
        Map entry = record('milestone', [label: opts.label?.toString(), ordinal: opts.ordinal])
        if (ctx.get().branch != null) {
            throw new AbortException('Using a milestone step inside parallel is not allowed')
        }
        milestoneOrdinal = opts.ordinal != null ? (opts.ordinal as int) : milestoneOrdinal + 1
        int build = (globalEnv.BUILD_NUMBER ?: '1') as int
        appendLog(null, "Trying to pass milestone ${milestoneOrdinal}")
        synchronized (MILESTONES) {
            Map<Integer, Integer> job = MILESTONES.computeIfAbsent(milestoneJob, { [:] })
            Integer last = job[milestoneOrdinal]
            if (last != null && build < last) {
                appendLog(null, "Canceled since build #${last} already got here")
                entry.cancelled = true
                currentBuild.result = 'NOT_BUILT'
                throw new FlowInterruptedException('NOT_BUILT', ["${jobName}#${last}".toString()])
            }
            job[milestoneOrdinal] = build
        }
        entry.ordinal = milestoneOrdinal
        return null
    }

    /** lockable-resources LockStep(resource): the body while holding the resource. */
    def lock(Object[] a) {
        Map opts = a[0] instanceof Map ? (Map) a[0] : [resource: a[0]]
        Closure body = (Closure) a[-1]
        String resource = opts.resource.toString()
        Map entry = record('lock', [resource: resource])
        appendLog(ctx.get().branch, "[${resource}] is locked by ${jobName} #${globalEnv.BUILD_NUMBER}, lock acquired")
        try {
            return block(entry, [:], body)
        } finally {
            appendLog(ctx.get().branch, "Lock released on resource [${resource}]")
        }
    }

    def wrapper(String name, Object[] a) {
        Closure body = a.length > 0 && a[-1] instanceof Closure ? (Closure) a[-1] : null
        Map entry = record(name, [args: a.findAll { !(it instanceof Closure) }.collect { it?.toString() }])
        return body == null ? null : block(entry, [:], body)
    }

    static void copyTree(File from, File to, PathMatcher matcher) {
        Path base = from.toPath()
        to.mkdirs()
        from.eachFileRecurse { File file ->
            Path relative = base.relativize(file.toPath())
            Path target = to.toPath().resolve(relative.toString())
            if (file.isDirectory()) {
                Files.createDirectories(target)
            } else if (matcher == null || matcher.matches(relative)) {
                Files.createDirectories(target.parent)
                Files.copy(file.toPath(), target, java.nio.file.StandardCopyOption.REPLACE_EXISTING,
                    java.nio.file.StandardCopyOption.COPY_ATTRIBUTES)
            }
        }
    }

    static Object jsonable(Object value) {
        if (value == null || value instanceof Number || value instanceof Boolean) {
            return value
        }
        if (value instanceof CharSequence) {
            return value.toString()
        }
        if (value instanceof Map) {
            Map out = new LinkedHashMap()
            ((Map) value).each { k, v -> out[k.toString()] = jsonable(v) }
            return out
        }
        if (value instanceof Collection || value instanceof Object[]) {
            return value.collect { jsonable(it) }
        }
        return value.toString()
    }

    static String toJson(Object value) {
        return JsonOutput.prettyPrint(JsonOutput.toJson(jsonable(value)))
    }
}

/**
 * An agent lost in the middle of a step: what workflow-durable-task-step's AgentErrorCondition
 * matches (a ClosedChannelException/EOFException cause, or the node removed).
 */
class AgentLostStandIn extends IOException {
    AgentLostStandIn(String agent) {
        super("Agent ${agent} was lost: java.nio.channels.ClosedChannelException".toString())
    }
}

/** `env` as pipelines see it: withEnv/withCredentials/node overlays, then the build's env. */
class EnvProxy extends GroovyObjectSupport {
    private final PipelineHarness harness

    EnvProxy(PipelineHarness harness) {
        this.harness = harness
    }

    @Override
    Object getProperty(String name) {
        return harness.envValue(name)
    }

    @Override
    void setProperty(String name, Object value) {
        harness.globalEnv[name] = value?.toString()
    }

    Object getAt(String name) {
        return harness.envValue(name)
    }
}
