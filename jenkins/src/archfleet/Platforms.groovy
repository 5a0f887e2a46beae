package archfleet

import com.cloudbees.groovy.cps.NonCPS
import groovy.json.JsonSlurper

/**
 * Platform names, agent labels and the native guard.
 *
 * The arch table is resources/archfleet/arches.json, generated from archfleet's
 * toolkit/archmap.py (the same mapping that labels agents when they are provisioned), so the
 * library never keeps a second copy. Pure functions of their arguments: no pipeline steps.
 */
class Platforms implements Serializable {
    private static final long serialVersionUID = 1L

    // The same spellings toolkit.registry.manifest.Platform.normalised accepts.
    private static final Map<String, String> ARCH_ALIASES = [
        'x86_64': 'amd64', 'x86-64': 'amd64', 'aarch64': 'arm64', 'i386': '386',
    ]
    private static final List<String> PLACEHOLDERS = ['arch', 'os', 'architecture', 'variant']

    /**
     * arches.json text -> its map; fails loudly if the resource is not what we generate.
     * JsonSlurper (sandbox-approved, unlike JsonSlurperClassic) gives LazyMaps, which are not
     * Serializable: the result is copied into plain maps and lists before the CPS step keeps it.
     */
    @NonCPS
    static Map parseTable(String json) {
        Object table = plain(new JsonSlurper().parseText(json))
        if (!(table instanceof Map) || !(table.platforms instanceof Map) || !table.defaultTagPattern) {
            throw new LibraryError(
                'archfleet/arches.json is not the table toolkit.archmap.export() writes')
        }
        return (Map) table
    }

    /** A JsonSlurper result as LinkedHashMaps and ArrayLists (Serializable, unlike LazyMap). */
    @NonCPS
    static Object plain(Object value) {
        if (value instanceof Map) {
            Map copy = [:]  // a literal: `new LinkedHashMap()` is not sandbox-approved
            for (Object key : ((Map) value).keySet()) {
                copy.put(key.toString(), plain(((Map) value).get(key)))
            }
            return copy
        }
        if (value instanceof List) {
            List copy = []
            for (Object item : (List) value) {
                copy.add(plain(item))
            }
            return copy
        }
        return value
    }

    /** 'linux/arm64/v8' -> 'linux/arm64', 'Linux/x86_64' -> 'linux/amd64'. */
    @NonCPS
    static String normalise(Object text) {
        if (!(text instanceof CharSequence)) {
            throw new LibraryError(
                "platform ${text} must be a string like 'linux/arm64'")
        }
        List<String> parts = text.toString().trim().toLowerCase().split('/') as List<String>
        if (!(parts.size() in [2, 3]) || parts.any { String part -> part.isEmpty() }) {
            throw new LibraryError(
                "invalid platform '${text}': expected OS/ARCH or OS/ARCH/VARIANT, e.g. linux/arm64")
        }
        // getOrDefault: Groovy's get(key, default) would insert the default into this shared map.
        String arch = ARCH_ALIASES.getOrDefault(parts[1], parts[1])
        String variant = parts.size() == 3 ? parts[2] : ''
        if (arch == 'arm64' && variant == 'v8') {
            variant = ''
        }
        return [parts[0], arch, variant].findAll { String part -> part }.join('/')
    }

    /** The platforms archfleet knows (and labels agents for), sorted. */
    @NonCPS
    static List<String> known(Map table) {
        return ((Map) table.platforms).keySet().collect { Object key -> key.toString() }.sort()
    }

    /**
     * One platform as the step uses it: name, parts, agent tag ('arm-v7') and the `uname -m`
     * values of a machine that runs it natively.
     */
    @NonCPS
    static Map describe(Map table, Object platform) {
        String name = normalise(platform)
        Map entry = (Map) ((Map) table.platforms).get(name)
        if (entry == null) {
            // containerd's other spellings of a platform ('linux/arm' is arm/v7, 'armhf'),
            // listed per platform by toolkit.archmap.export() from toolkit/registry/platforms.py.
            String spelled = platform.toString().trim().toLowerCase()
            for (Object key : ((Map) table.platforms).keySet()) {
                List spellings = (List) (((Map) ((Map) table.platforms).get(key)).spellings ?: [])
                if (spellings.contains(spelled) || spellings.contains(name)) {
                    name = key.toString()
                    entry = (Map) ((Map) table.platforms).get(key)
                    break
                }
            }
        }
        if (entry == null) {
            throw new LibraryError(
                "unknown platform '${platform}' (known: ${known(table).join(', ')})")
        }
        List<String> parts = name.split('/') as List<String>
        return [
            platform    : name,
            os          : parts[0],
            architecture: parts[1],
            variant     : parts.size() == 3 ? parts[2] : '',
            tag         : entry.tag.toString(),
            unames      : ((List) entry.unames).collect { Object uname -> uname.toString() },
        ]
    }

    /**
     * The agent label for a platform. `pattern` is a String with {arch} (also ${arch}), {os},
     * {architecture}, {variant} placeholders, e.g. 'linux && {arch}', or a Map from platform
     * to label.
     */
    @NonCPS
    static String label(Map arch, Object pattern) {
        if (pattern instanceof Map) {
            Map byPlatform = (Map) pattern
            Object label = byPlatform.containsKey(arch.platform) ? byPlatform.get(arch.platform)
                : byPlatform.find { Object key, Object value ->
                    // Qualified: an unqualified static call from a closure goes through
                    // invokeMethod, which the sandbox rejects.
                    key instanceof CharSequence && Platforms.normalise(key) == arch.platform
                }?.value
            if (!(label instanceof CharSequence) || !label.toString().trim()) {
                throw new LibraryError(
                    "agentLabel map has no label for ${arch.platform} (it has: ${byPlatform.keySet().join(', ')})")
            }
            return label.toString().trim()
        }
        if (!(pattern instanceof CharSequence)) {
            throw new LibraryError(
                "agentLabel must be a label pattern such as 'linux && {arch}' or a map platform -> label")
        }
        Map<String, String> values = [
            arch: arch.tag, os: arch.os, architecture: arch.architecture, variant: arch.variant,
        ]
        String text = pattern.toString()
        StringBuffer rendered = new StringBuffer()
        def matcher = (text =~ /\$?\{([^{}]*)\}/)
        while (matcher.find()) {
            String name = matcher.group(1)
            if (!(name in PLACEHOLDERS)) {
                throw new LibraryError(
                    "agentLabel '${text}' uses {${name}}; use ${PLACEHOLDERS.collect { String p -> '{' + p + '}' }.join(', ')}")
            }
            matcher.appendReplacement(rendered, java.util.regex.Matcher.quoteReplacement(values[name]))
        }
        matcher.appendTail(rendered)
        String label = rendered.toString().trim()
        if (!label) {
            throw new LibraryError("agentLabel '${text}' gives an empty label for ${arch.platform}")
        }
        return label
    }

    /**
     * The native guard: null when a machine whose `uname -m` is `machine` runs `arch` natively,
     * otherwise what is wrong, in words.
     */
    @NonCPS
    static String guard(Map table, Map arch, String machine, String label, String nodeName) {
        String seen = (machine ?: '').trim()
        if (seen in (List) arch.unames) {
            return null
        }
        Object runs = ((Map) table.unameToPlatform).get(seen)
        String what = runs ? "which runs ${runs}" : 'which archfleet does not know'
        String where = nodeName ? "agent '${nodeName}'" : 'the agent'
        return "${arch.platform} must build natively, on a machine whose uname -m is " +
            "${((List) arch.unames).join(' or ')}, but ${where} (label '${label}') reports " +
            "'${seen}', ${what}"
    }

    /**
     * The buildx side of the native guard: null when a node of the builder `docker buildx
     * inspect --bootstrap` describes runs `arch` natively, otherwise what is wrong. BuildKit
     * lists a worker's platforms native first, then those it can emulate (binfmt/QEMU), so the
     * first entry of each node's `Platforms:` line is that machine's own (a '*' marks a
     * platform set by configuration). arm/v7 and arm/v6 also count as native on an arm64 node
     * (AArch32, as the uname guard accepts armv8l).
     */
    @NonCPS
    static String builderGuard(Map arch, String inspect) {
        List<String> natives = []
        String builder = null
        for (String line : (inspect ?: '').readLines()) {
            String text = line.trim()
            if (builder == null && text.startsWith('Name:')) {
                builder = text.substring(5).trim()
            }
            if (!text.startsWith('Platforms:')) {
                continue
            }
            String first = text.substring(10).split(',')[0].replaceAll(/\*/, '').trim()
            if (first) {
                natives << Platforms.normalise(first)
            }
        }
        String name = builder ? "buildx builder '${builder}'" : 'the buildx builder'
        if (!natives) {
            return "${name} reported no platforms (docker buildx inspect --bootstrap printed no 'Platforms:' line)"
        }
        if (arch.platform in natives) {
            return null
        }
        if (arch.architecture == 'arm' && 'linux/arm64' in natives) {
            return null
        }
        return "${arch.platform} must build natively, but ${name} runs on ${natives.join(', ')} " +
            '(its first platform per node; the others it only emulates): a remote builder or ' +
            'DOCKER_HOST builds on another machine than the agent'
    }

    /** The last non-empty line of `output`, trimmed ('' when none). */
    @NonCPS
    static String lastLine(String output) {
        List<String> lines = (output ?: '').readLines()
        for (int i = lines.size() - 1; i >= 0; i--) {
            if (lines[i].trim()) {
                return lines[i].trim()
            }
        }
        return ''
    }

    /**
     * The smoke run's verdict (ci-templates/src/smoke.sh archfleet_smoke): null when `command`
     * succeeded in `ref` pulled as `arch` and, if its last line is a machine name archfleet knows
     * (the default command is `uname -m`), that machine is the platform's; otherwise what is wrong.
     */
    @NonCPS
    static String smokeProblem(Map table, Map arch, String command, String ref, int code, String output) {
        if (code != 0) {
            return "'${command}' failed in ${ref} pulled as ${arch.platform} (exit code ${code}; its output is above)"
        }
        String last = lastLine(output)
        Object runs = ((Map) table.unameToPlatform).get(last)
        if (runs != null && !(last in (List) arch.unames)) {
            return "${ref} pulled as ${arch.platform} runs as ${last} (${runs}): the index's " +
                "${arch.platform} entry is another platform's image"
        }
        return null
    }
}
