package archfleet

import com.cloudbees.groovy.cps.NonCPS

/**
 * multiArchBuild's arguments: defaults, validation, and what each build and the merge get.
 *
 * parse() turns the step's arguments into a plain map of Strings, Booleans, Lists and Maps
 * (serializable, so the CPS step can keep it across steps) or throws LibraryError with a message
 * a user can act on. Pure: the caller passes in what it read from the build.
 */
class Config implements Serializable {
    private static final long serialVersionUID = 1L

    /** Every argument: name, type, default and an example, as vars/multiArchBuild.txt lists them. */
    static final List<Map<String, String>> ARGUMENTS = Collections.unmodifiableList([
        [name: 'image', type: 'String (required)', default: '-',
         example: "'registry.example.com/team/app'"],
        [name: 'platforms', type: 'List<String>', default: "['linux/amd64', 'linux/arm64']",
         example: "['linux/amd64', 'linux/arm64', 'linux/arm/v7']"],
        [name: 'context', type: 'String', default: "'.'", example: "'app'"],
        [name: 'dockerfile', type: 'String', default: "context + '/Dockerfile'",
         example: "'app/Containerfile'"],
        [name: 'agentLabel', type: 'String pattern or Map', default: "'{arch}'",
         example: "'linux && {arch}'"],
        [name: 'mergeLabel', type: 'String', default: 'the first platform\'s label',
         example: "'linux && amd64'"],
        [name: 'builder', type: "'buildx' or 'buildah'", default: "'buildx'", example: "'buildah'"],
        [name: 'buildArgs', type: 'Map<String, String>', default: '[:]',
         example: "[VERSION: '1.4.0']"],
        [name: 'tags', type: 'List<String>', default: "[env.TAG_NAME] on a tag build, else ['latest']",
         example: "['1.4.0', 'latest']"],
        [name: 'credentialsId', type: 'String', default: 'none (anonymous push)',
         example: "'registry-push'"],
        [name: 'push', type: 'Boolean', default: 'true on mainBranch or a tag build, else false',
         example: 'true'],
        [name: 'mainBranch', type: 'String', default: "'main'", example: "'master'"],
        [name: 'allowEmulation', type: 'Boolean', default: 'false', example: 'true'],
        [name: 'verify', type: 'Boolean', default: 'true', example: 'false'],
        [name: 'checkBinaries', type: 'Boolean', default: 'true', example: 'false'],
        [name: 'insecure', type: 'Boolean', default: 'false', example: 'true'],
        [name: 'childTags', type: 'Boolean', default: 'true', example: 'false'],
        [name: 'archfleet', type: 'String',
         default: '\'archfleet\' (without archfleetImage: $ARCHFLEET on the agent first)',
         example: "'/opt/archfleet/bin/archfleet'"],
        [name: 'archfleetImage', type: 'String', default: 'none (archfleet on the merge agent)',
         example: "'registry.example.com/platform/archfleet:0.1.0'"],
        [name: 'archfleetImageArgs', type: 'String', default: "''", example: "'--network host'"],
        [name: 'archfleetImageCredentialsId', type: 'String', default: 'none (pull as the agent is)',
         example: "'registry-pull'"],
        [name: 'checkout', type: 'Boolean', default: 'true', example: 'false'],
        [name: 'scm', type: 'SCM', default: 'scm (the job\'s own)',
         example: '[$class: \'GitSCM\', userRemoteConfigs: [[url: \'https://git.example.com/app.git\']]]'],
        [name: 'failFast', type: 'Boolean', default: 'true', example: 'false'],
    ])  // not .asImmutable(): the sandbox approves only its Map form

    static final String WORK_DIR = '.archfleet'

    private static final String HOST = /(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*|\[[0-9A-Fa-f:]+\])(?::[0-9]+)?/
    private static final String COMPONENT = /[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*/
    private static final String TAG = /[A-Za-z0-9_][A-Za-z0-9._-]{0,127}/
    private static final String BUILD_ARG = /[A-Za-z_][A-Za-z0-9_]*/

    /**
     * args: what the pipeline passed; archesJson: resources/archfleet/arches.json;
     * build: BRANCH_NAME, TAG_NAME and BUILD_TAG of this run (null when unset).
     */
    @NonCPS
    static Map parse(Map args, String archesJson, Map build) {
        if (args == null) {
            throw new LibraryError(
                "give the arguments as a map, e.g. multiArchBuild(image: 'registry.example.com/team/app')")
        }
        List<String> names = ARGUMENTS.collect { Map<String, String> a -> a.name }
        List<String> unknown = args.keySet().collect { Object k -> k.toString() }.findAll { String k -> !(k in names) }
        if (unknown) {
            throw new LibraryError(
                "unknown argument(s) ${unknown.join(', ')}; known: ${names.join(', ')}")
        }
        Map table = Platforms.parseTable(archesJson)

        Map image = parseImage(args.image)
        List<String> tags = stringList(args, 'tags', [])
        if (image.tag && !(image.tag in tags)) {
            tags = [image.tag] + tags
        }
        if (!tags) {
            tags = build.TAG_NAME ? [build.TAG_NAME.toString()] : ['latest']
        }
        for (String tag : tags) {
            if (!(tag ==~ TAG)) {
                throw new LibraryError(
                    "tag '${tag}' is not a valid tag (letters, digits, '_', '.', '-'; at most 128; not starting with '.' or '-')")
            }
        }

        List<String> requested = args.containsKey('platforms') ? stringList(args, 'platforms', null)
            : ['linux/amd64', 'linux/arm64']
        if (!requested) {
            throw new LibraryError(
                "platforms is empty: list at least one, e.g. platforms: ['linux/amd64', 'linux/arm64']")
        }
        boolean allowEmulation = flag(args, 'allowEmulation', false)
        Object pattern = args.containsKey('agentLabel') ? args.agentLabel : table.defaultTagPattern
        String buildId = localName(build.BUILD_TAG)
        List<Map> arches = []
        Map<String, String> labelOwner = [:]
        for (Object wanted : requested) {
            Map arch = Platforms.describe(table, wanted)
            if (arches.any { Map seen -> seen.platform == arch.platform }) {
                throw new LibraryError("platform ${arch.platform} is listed twice in platforms")
            }
            arch.label = Platforms.label(arch, pattern)
            if (labelOwner.containsKey(arch.label) && !allowEmulation) {
                throw new LibraryError(
                    "agentLabel gives ${labelOwner[arch.label]} and ${arch.platform} the same label " +
                    "'${arch.label}': one agent cannot be native for both; put {arch} in the pattern " +
                    "or pass allowEmulation: true")
            }
            labelOwner[arch.label] = arch.platform
            arch.out = "${WORK_DIR}/${arch.tag}".toString()
            arch.localRef = "localhost/archfleet-build:${buildId}-${arch.tag}".toString()
            arches << arch
        }

        String builder = string(args, 'builder', 'buildx')
        if (!(builder in ['buildx', 'buildah'])) {
            throw new LibraryError("builder must be 'buildx' or 'buildah', not '${builder}'")
        }
        String context = string(args, 'context', '.')
        String dockerfile = string(args, 'dockerfile', "${context}/Dockerfile".toString())
        Map<String, String> buildArgs = buildArgMap(args.buildArgs)
        String mainBranch = string(args, 'mainBranch', 'main')
        Object push = args.push
        if (push != null && !(push instanceof Boolean)) {
            throw new LibraryError("push must be true or false, not '${push}'")
        }
        boolean pushing = push != null ? push : (build.TAG_NAME || build.BRANCH_NAME == mainBranch)
        String credentialsId = args.credentialsId == null ? null : string(args, 'credentialsId', null)
        String archfleet = args.archfleet == null ? null : string(args, 'archfleet', null)
        Map tool = toolImage(args)

        return [
            image         : image.repository,
            registry      : image.registry,
            tags          : tags,
            targets       : tags.collect { String tag -> "${image.repository}:${tag}".toString() },
            arches        : arches,
            platformList  : arches.collect { Map a -> a.platform }.join(','),
            builder       : builder,
            context       : context,
            dockerfile    : dockerfile,
            buildArgs     : buildArgs,
            buildArgsText : buildArgs.collect { String k, String v -> "${k}=${v}\n".toString() }.join(''),
            credentialsId : credentialsId,
            push          : pushing,
            mainBranch    : mainBranch,
            allowEmulation: allowEmulation,
            verify        : flag(args, 'verify', true),
            checkBinaries : flag(args, 'checkBinaries', true),
            insecure      : flag(args, 'insecure', false),
            childTags     : flag(args, 'childTags', true),
            archfleet     : archfleet,
            archfleetImage: tool.image,
            archfleetImageArgs: tool.args,
            archfleetImageCredentialsId: tool.credentialsId,
            archfleetImageRegistryUrl: tool.registryUrl,
            dockerAuthKey : Tool.authKey(image.registry),
            checkout      : flag(args, 'checkout', true),
            scm           : args.scm,
            failFast      : flag(args, 'failFast', true),
            mergeLabel    : string(args, 'mergeLabel', arches[0].label),
            mergeOut      : "${WORK_DIR}/merge".toString(),
        ]
    }

    /** withEnv entries for one platform's build script (resources/archfleet/build.sh). */
    @NonCPS
    static List<String> buildEnv(Map cfg, Map arch) {
        return [
            "AF_PLATFORM=${arch.platform}",
            "AF_TAG_SUFFIX=${arch.tag}",
            "AF_BUILDER=${cfg.builder}",
            "AF_IMAGE=${cfg.image}",
            "AF_REGISTRY=${cfg.registry}",
            "AF_CONTEXT=${cfg.context}",
            "AF_DOCKERFILE=${cfg.dockerfile}",
            "AF_OUT=${arch.out}",
            "AF_LOCAL_REF=${arch.localRef}",
            "AF_PUSH=${cfg.push ? 1 : 0}",
            "AF_INSECURE=${cfg.insecure ? 1 : 0}",
        ].collect { Object entry -> entry.toString() }
    }

    /**
     * withEnv entries for the merge script (resources/archfleet/merge.sh). dockerConfig: the
     * directory of the private docker config holding the push login, for a merge in
     * archfleetImage (null otherwise: the login comes as REGISTRY_USER/REGISTRY_PASSWORD).
     */
    @NonCPS
    static List<String> mergeEnv(Map cfg, Map digests, String dockerConfig = null) {
        List<String> sources = []
        for (Map arch : (List<Map>) cfg.arches) {
            Object digest = digests[arch.platform]
            if (digest == null) {
                throw new LibraryError("no digest came back from the ${arch.platform} build")
            }
            sources << Digests.source(arch.platform.toString(), digest.toString())
        }
        List<String> env = [
            "AF_OUT=${cfg.mergeOut}",
            "AF_TARGETS=${((List) cfg.targets).join(' ')}",
            "AF_SOURCES=${sources.join(' ')}",
            "AF_PLATFORMS=${cfg.platformList}",
            "AF_INSECURE=${cfg.insecure ? 1 : 0}",
            "AF_CHILD_TAGS=${cfg.childTags ? 1 : 0}",
            "AF_VERIFY=${cfg.verify ? 1 : 0}",
            "AF_CHECK_BINARIES=${cfg.checkBinaries ? 1 : 0}",
        ].collect { Object entry -> entry.toString() }
        env.addAll(Tool.commandEnv(cfg))
        if (dockerConfig != null) {
            env << "DOCKER_CONFIG=${dockerConfig}".toString()
        }
        return env
    }

    /**
     * archfleetImage and its options: where merge and verify run when not on the agent itself.
     * The reference is checked the way Docker Pipeline's docker.image(id) checks it
     * (docker-commons ImageNameValidator: [REGISTRY/]NAME[:TAG][@DIGEST]), here rather than at
     * merge time, after every platform has built.
     */
    @NonCPS
    static Map toolImage(Map args) {
        if (args.archfleetImage == null) {
            for (String option : ['archfleetImageArgs', 'archfleetImageCredentialsId']) {
                if (args[option] != null) {
                    throw new LibraryError(
                        "${option} only applies with archfleetImage, e.g. archfleetImage: ${exampleOf('archfleetImage')}")
                }
            }
            return [image: null, args: '', credentialsId: null, registryUrl: null]
        }
        String image = string(args, 'archfleetImage', null)
        if (!(image ==~ "(?:${HOST}/)?${COMPONENT}(?:/${COMPONENT})*(?::${TAG})?(?:@sha256:[0-9a-f]{64})?")) {
            throw new LibraryError(
                "archfleetImage '${image}' is not an image reference [REGISTRY/]REPOSITORY[:TAG][@sha256:DIGEST] " +
                "with a lowercase repository, e.g. archfleetImage: ${exampleOf('archfleetImage')}")
        }
        Object extra = args.archfleetImageArgs
        if (extra != null && (!(extra instanceof CharSequence) || extra.toString().contains('\n'))) {
            throw new LibraryError(
                "archfleetImageArgs must be one line of docker run options, e.g. archfleetImageArgs: ${exampleOf('archfleetImageArgs')}")
        }
        String credentialsId = args.archfleetImageCredentialsId == null ? null :
            string(args, 'archfleetImageCredentialsId', null)
        return [image: image, args: extra == null ? '' : extra.toString().trim(), credentialsId: credentialsId,
                registryUrl: Tool.registryUrl(image)]
    }

    /** 'registry.example.com/team/app[:tag]' -> registry, repository, tag. */
    @NonCPS
    static Map parseImage(Object value) {
        if (value == null || (value instanceof CharSequence && !value.toString().trim())) {
            throw new LibraryError(
                "image is required: the repository to push to, e.g. image: 'registry.example.com/team/app'")
        }
        if (!(value instanceof CharSequence)) {
            throw new LibraryError("image must be a string, not ${value.getClass().simpleName}")
        }
        String text = value.toString().trim()
        if (text.contains('@')) {
            throw new LibraryError(
                "image '${text}' has a digest; give the repository (and tags: [...]) instead")
        }
        def match = (text =~ "^(${HOST})/(${COMPONENT}(?:/${COMPONENT})*)(?::(${TAG}))?\$")
        if (!match.matches()) {
            throw new LibraryError(
                "image '${text}' is not REGISTRY/REPOSITORY[:TAG] with a lowercase repository, " +
                "e.g. registry.example.com/team/app")
        }
        String registry = match.group(1)
        if (!(registry.contains('.') || registry.contains(':') || registry == 'localhost')) {
            throw new LibraryError(
                "image '${text}' must start with its registry host, e.g. registry.example.com/${text}")
        }
        return [registry: registry, repository: "${registry}/${match.group(2)}".toString(),
                tag: match.group(3)]
    }

    @NonCPS
    private static Map<String, String> buildArgMap(Object value) {
        if (value == null) {
            return [:]
        }
        if (!(value instanceof Map)) {
            throw new LibraryError("buildArgs must be a map, e.g. buildArgs: [VERSION: '1.4.0']")
        }
        Map<String, String> result = [:]
        ((Map) value).each { Object key, Object raw ->
            String name = key.toString()
            if (!(name ==~ BUILD_ARG)) {
                throw new LibraryError("build arg name '${name}' must match ${BUILD_ARG}")
            }
            String text = raw == null ? '' : raw.toString()
            if (text.contains('\n') || text.contains('\r')) {
                throw new LibraryError("build arg ${name} contains a line break")
            }
            result[name] = text
        }
        return result
    }

    @NonCPS
    private static List<String> stringList(Map args, String name, List<String> fallback) {
        Object value = args[name]
        if (value == null) {
            return fallback
        }
        if (value instanceof CharSequence) {
            value = value.toString().split(',').collect { String part -> part.trim() }.findAll { String part -> part }
        }
        if (!(value instanceof Collection) || ((Collection) value).any { Object v -> !(v instanceof CharSequence) }) {
            throw new LibraryError("${name} must be a list of strings, e.g. ${exampleOf(name)}")
        }
        return ((Collection) value).collect { Object v -> v.toString().trim() }
    }

    @NonCPS
    private static String string(Map args, String name, String fallback) {
        Object value = args[name]
        if (value == null) {
            return fallback
        }
        if (!(value instanceof CharSequence) || !value.toString().trim()) {
            throw new LibraryError("${name} must be a non-empty string, e.g. ${name}: ${exampleOf(name)}")
        }
        return value.toString().trim()
    }

    @NonCPS
    private static boolean flag(Map args, String name, boolean fallback) {
        Object value = args[name]
        if (value == null) {
            return fallback
        }
        if (!(value instanceof Boolean)) {
            throw new LibraryError("${name} must be true or false, not '${value}'")
        }
        return (Boolean) value
    }

    @NonCPS
    private static String exampleOf(String name) {
        return ARGUMENTS.find { Map<String, String> a -> a.name == name }?.example
    }

    /** BUILD_TAG ('jenkins-team-app-42') as a tag-safe local image name part. */
    @NonCPS
    private static String localName(Object buildTag) {
        String text = (buildTag ?: 'local').toString().toLowerCase().replaceAll(/[^a-z0-9_.-]+/, '-')
        text = text.replaceAll(/^[.-]+/, '')
        return (text ?: 'local').take(100)
    }
}
