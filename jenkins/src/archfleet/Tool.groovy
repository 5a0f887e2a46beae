package archfleet

import com.cloudbees.groovy.cps.NonCPS

/**
 * The archfleet command the merge runs: which version this library needs, how the scripts find
 * the command, and what the preflight (resources/archfleet/check-tool.sh) found.
 *
 * resources/archfleet/version.txt is the archfleet package's version (toolkit/__init__.py
 * __version__; a unit test fails when they differ). The merge agent's archfleet, or the one in
 * archfleetImage, must be exactly that version: the step checks it before any platform builds,
 * so a missing or wrong tool fails the build in seconds instead of after every push.
 */
class Tool implements Serializable {
    private static final long serialVersionUID = 1L

    private static final String VERSION = /[0-9A-Za-z][0-9A-Za-z.+!_-]{0,63}/
    // docker/cli cli/config/configfile/file.go: the only key docker keeps Docker Hub's login
    // under (toolkit/registry/auth.py DOCKER_HUB_AUTH_KEY).
    static final String DOCKER_HUB_AUTH_KEY = 'https://index.docker.io/v1/'
    private static final List<String> DOCKER_HUB_HOSTS = Collections.unmodifiableList(
        ['docker.io', 'index.docker.io', 'registry-1.docker.io'])
    private static final int SHOWN = 300

    /** version.txt's text -> the version; a damaged resource is the library's own bug. */
    @NonCPS
    static String version(String resource) {
        String text = (resource ?: '').trim()
        if (!(text ==~ VERSION)) {
            throw new LibraryError("archfleet/version.txt holds '${text}', not a version: the library is damaged")
        }
        return text
    }

    /**
     * withEnv entries that tell check-tool.sh and merge.sh which command runs archfleet. In the
     * image it is always set: an agent's ARCHFLEET property (a host path) reaches the container
     * through docker exec --env and must not be used there.
     */
    @NonCPS
    static List<String> commandEnv(Map cfg) {
        if (cfg.archfleetImage) {
            return ["AF_ARCHFLEET=${cfg.archfleet ?: 'archfleet'}".toString()]
        }
        return cfg.archfleet ? ["AF_ARCHFLEET=${cfg.archfleet}".toString()] : []
    }

    /** Where the tool runs, for messages: "in image 'x' on agent 'y' (label 'z')". */
    @NonCPS
    static String where(Map cfg, String nodeName) {
        String agent = nodeName ? "agent '${nodeName}' (label '${cfg.mergeLabel}')" :
            "the agent with label '${cfg.mergeLabel}'"
        return cfg.archfleetImage ? "in image '${cfg.archfleetImage}' on ${agent}" : "on ${agent}"
    }

    /** check-tool.sh's key=value lines -> a map (output: the --version lines, in order). */
    @NonCPS
    static Map parseCheck(String text) {
        Map found = [output: []]
        for (String line : (text ?: '').readLines()) {
            int eq = line.indexOf('=')
            if (eq <= 0) {
                continue
            }
            String key = line.substring(0, eq)
            String value = line.substring(eq + 1)
            if (key == 'output') {
                ((List) found.output) << value
            } else {
                found[key] = value
            }
        }
        return found
    }

    /**
     * null when the preflight found archfleet `expected`; otherwise what is wrong, where, and how
     * to provide the right tool. `checkOutput` is check-tool.sh's stdout.
     */
    @NonCPS
    static String problem(String expected, String checkOutput, Map cfg, String nodeName) {
        Map check = parseCheck(checkOutput)
        String place = where(cfg, nodeName)
        String command = check.command ?: 'archfleet'
        String output = shorten(((List) check.output).join(' | '))
        if (check.status == 'missing') {
            return "archfleet not found ${place}: no command '${command}' on its PATH. " + howToProvide(cfg, expected)
        }
        if (check.status == 'failed') {
            return "'${command} --version' failed ${place} (exit code ${check.code}" +
                (output ? "): ${output}. " : ', no output). ') + howToProvide(cfg, expected)
        }
        if (check.status != 'ok') {
            return "the archfleet check ${place} printed nothing it could read (${shorten(checkOutput ?: '')})"
        }
        String found = null
        for (Object line : (List) check.output) {
            def match = (line.toString().trim() =~ /^archfleet (\S+)$/)
            if (match.matches()) {
                found = match.group(1)
                break
            }
        }
        if (found == null) {
            return "'${command} --version' ${place} printed '${output}', not 'archfleet <version>': " +
                "is '${command}' archfleet? " + howToProvide(cfg, expected)
        }
        if (found != expected) {
            return "archfleet ${place} is version ${found}, but this library is version ${expected} " +
                "(expected ${expected}, found ${found}). " + howToProvide(cfg, expected) +
                " Or load the library at the tool's version, e.g. @Library('archfleet@<that release>')."
        }
        return null
    }

    @NonCPS
    private static String howToProvide(Map cfg, String expected) {
        if (cfg.archfleetImage) {
            return "archfleetImage must be the archfleet tool image of version ${expected} (archfleet on " +
                "its PATH, in /opt/archfleet/bin), e.g. archfleetImage: '<registry>/<path>/archfleet:${expected}'; " +
                "for another image, set archfleet: to the command that runs archfleet ${expected} in it."
        }
        return "Provide archfleet ${expected} to the merge: archfleetImage: '<registry>/<path>/archfleet:${expected}' " +
            "(the archfleet tool image; merge and verify then run in it with docker.image(...).inside, " +
            "which needs Docker on the agent and the Docker Pipeline plugin), or install it on the " +
            "merge agent (archfleet's provisioning does so for hosts with the merge-tool role) and, " +
            "if it is not on PATH, set archfleet: or the agent's ARCHFLEET property to its path."
    }

    @NonCPS
    private static String shorten(String text) {
        String flat = text.replaceAll(/\s+/, ' ').trim()
        return flat.length() > SHOWN ? flat.substring(0, SHOWN) + '...' : flat
    }

    /** The URL docker.withRegistry logs in to for pulling `image` (Docker Hub without a host). */
    @NonCPS
    static String registryUrl(String image) {
        int slash = image.indexOf('/')
        String first = slash > 0 ? image.substring(0, slash) : ''
        boolean hasHost = first.contains('.') || first.contains(':') || first == 'localhost'
        if (!hasHost || first in DOCKER_HUB_HOSTS) {
            return DOCKER_HUB_AUTH_KEY
        }
        return "https://${first}".toString()
    }

    /** The config.json `auths` key archfleet (and docker) look `registry`'s login up under. */
    @NonCPS
    static String authKey(String registry) {
        return registry in DOCKER_HUB_HOSTS ? DOCKER_HUB_AUTH_KEY : registry
    }

    /**
     * The preflight's error when `archfleet check-bases` failed: each `error: ...` line it wrote
     * to stderr (each names a base and the platform it lacks), and what to do.
     */
    @NonCPS
    static String basesProblem(String dockerfile, String platforms, String stderr) {
        List<String> problems = []
        for (String line : (stderr ?: '').readLines()) {
            String text = line.trim()
            if (text.startsWith('error: ')) {
                problems << text.substring('error: '.length())
            }
        }
        if (!problems) {
            return "archfleet check-bases failed on ${dockerfile} before any build (its output is above); " +
                'pass checkBases: false to skip the base image check'
        }
        return "a base image of ${dockerfile} does not offer every platform of ${platforms} " +
            "(archfleet check-bases, before any build): ${shorten(problems.join('; '))}. Use a base that " +
            'offers them, build fewer platforms, or pass checkBases: false to skip this check'
    }
}
