package archfleet

import com.cloudbees.groovy.cps.NonCPS
import groovy.json.JsonSlurper

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
        [name: 'platforms', type: 'List of String', default: "['linux/amd64', 'linux/arm64']",
         example: "['linux/amd64', 'linux/arm64', 'linux/arm/v7']"],
        [name: 'context', type: 'String', default: "'.'", example: "'app'"],
        [name: 'dockerfile', type: 'String', default: "context + '/Dockerfile'",
         example: "'app/Containerfile'"],
        [name: 'images', type: "List of Map [name:, context:, dockerfile:], or 'discover'",
         default: 'none (one image: image, context, dockerfile)',
         example: "[[name: 'job-a', context: 'jobs/job-a'], [name: 'job-b', context: 'jobs/job-b', dockerfile: 'jobs/job-b/Containerfile']]"],
        [name: 'discover', type: 'Map [root:, pattern:, exclude:, defaultExcludes:, rootName:]',
         default: "[:] (archfleet discover-images' defaults)",
         example: "[root: 'jobs', exclude: ['legacy', 'jobs/*/test']]"],
        [name: 'agentLabel', type: 'String pattern or Map', default: "'{arch}'",
         example: "'linux && {arch}'"],
        [name: 'mergeLabel', type: 'String', default: 'the first platform\'s label',
         example: "'linux && amd64'"],
        [name: 'builder', type: "'buildah' or 'buildx'", default: "'buildah'", example: "'buildx'"],
        [name: 'cache', type: 'Boolean', default: "true with builder 'buildah', false with 'buildx'",
         example: 'false'],
        [name: 'cacheRepository', type: 'String', default: "image + '/buildcache'",
         example: "'registry.example.com/team/app/buildcache'"],
        [name: 'buildArgs', type: 'Map of String to String', default: '[:]',
         example: "[VERSION: '1.4.0']"],
        [name: 'imageTags', type: 'List of String',
         default: 'the short commit SHA and the branch or tag slug', example: "['1.4.0', 'stable']"],
        [name: 'tagLatest', type: 'Boolean', default: 'true (latest on the primary branch)',
         example: 'false'],
        [name: 'tagSemver', type: 'Boolean', default: 'true (X.Y.Z, X.Y, X on a tag vX.Y.Z)',
         example: 'false'],
        [name: 'tags', type: 'List of String', default: 'deprecated: use imageTags',
         example: "['1.4.0']"],
        [name: 'credentialsId', type: 'String', default: 'none (anonymous push)',
         example: "'registry-push'"],
        [name: 'push', type: 'Boolean', default: 'true on the primary branch or a tag build, else false',
         example: 'true'],
        [name: 'mainBranch', type: 'String', default: 'deprecated: env.BRANCH_IS_PRIMARY decides',
         example: "'master'"],
        [name: 'allowEmulation', type: 'Boolean or String (a fallback label)', default: 'false',
         example: "'qemu-builders'"],
        [name: 'agentTimeout', type: 'Integer (minutes)', default: '60', example: '120'],
        [name: 'agentRetries', type: 'Integer', default: '1', example: '0'],
        [name: 'lock', type: 'Boolean', default: 'true (when Lockable Resources is installed)',
         example: 'false'],
        [name: 'verify', type: 'Boolean', default: 'true', example: 'false'],
        [name: 'checkBinaries', type: 'Boolean', default: 'true', example: 'false'],
        [name: 'smokeCommand', type: 'String', default: 'none (no smoke run)', example: "'uname -m'"],
        [name: 'insecure', type: 'Boolean', default: 'false', example: 'true'],
        [name: 'childTags', type: 'Boolean', default: 'true', example: 'false'],
        [name: 'checkBases', type: 'Boolean', default: 'true (when the build pushes)', example: 'false'],
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
    ])  // Collections.unmodifiableList: the sandbox approves asImmutable for Maps only

    private static final String HOST = /(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*|\[[0-9A-Fa-f:]+\])(?::[0-9]+)?/
    private static final String COMPONENT = /[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*/
    private static final String TAG = /[A-Za-z0-9_][A-Za-z0-9._-]{0,127}/
    private static final String BUILD_ARG = /[A-Za-z_][A-Za-z0-9_]*/
    // Build args reach the builder through its environment (`--build-arg NAME` takes the value
    // from there, off the command line): names the scripts or the shell need are refused.
    private static final List<String> RESERVED_BUILD_ARGS = Collections.unmodifiableList(
        ['PATH', 'HOME', 'IFS', 'PWD', 'SHELL', 'TMPDIR', 'DOCKER_CONFIG', 'DOCKER_HOST',
         'REGISTRY_USER', 'REGISTRY_PASSWORD', 'BUILDAH_ISOLATION', 'CONTAINERS_STORAGE_CONF'])
    private static final int MAX_AGENT_TIMEOUT = 7 * 24 * 60
    /** images: 'discover': the step runs `archfleet discover-images --json` in the preflight. */
    static final String DISCOVER = 'discover'
    /** discover: keys, as `archfleet discover-images` names its options (toolkit/tasks/discover.py). */
    static final List<String> DISCOVER_KEYS = Collections.unmodifiableList(
        ['root', 'pattern', 'exclude', 'defaultExcludes', 'rootName'])

    /**
     * args: what the pipeline passed; archesJson: resources/archfleet/arches.json;
     * build: BRANCH_NAME, BRANCH_IS_PRIMARY, TAG_NAME, GIT_COMMIT and BUILD_TAG of this run
     * (null when unset). The result's `warnings` are for the step to echo.
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

        List<String> warnings = []
        Map image = parseImage(args.image)
        String tagsArgument = 'imageTags'
        if (args.tags != null) {
            if (args.imageTags != null) {
                throw new LibraryError("pass imageTags only: tags is its old, deprecated name")
            }
            tagsArgument = 'tags'
            warnings << ("multiArchBuild: WARNING: the argument 'tags' is deprecated, use 'imageTags' " +
                "(the GitLab component's image_tags); 'latest' is now added on the primary branch " +
                'unless tagLatest: false').toString()
        }
        List<String> explicitTags = stringList(args, tagsArgument, null)
        for (String tag : (explicitTags ?: []) + (image.tag ? [image.tag] : [])) {
            if (!(tag ==~ TAG)) {
                throw new LibraryError(
                    "tag '${tag}' is not a valid tag (letters, digits, '_', '.', '-'; at most 128; not starting with '.' or '-')")
            }
        }
        boolean primary
        if (args.mainBranch != null) {
            String mainBranch = string(args, 'mainBranch', null)
            primary = build.BRANCH_NAME == mainBranch && !build.TAG_NAME
            warnings << ("multiArchBuild: WARNING: mainBranch is deprecated: in a multibranch job " +
                'Jenkins marks the primary branch itself (env.BRANCH_IS_PRIMARY)').toString()
        } else {
            primary = build.BRANCH_IS_PRIMARY?.toString() == 'true' && !build.TAG_NAME
        }
        String tag = build.TAG_NAME ? build.TAG_NAME.toString() : null
        Map tagPlan = [
            explicit: explicitTags,
            imageTag: image.tag,
            slug    : refSlug(tag ?: build.BRANCH_NAME),
            latest  : flag(args, 'tagLatest', true) && primary,
            semver  : flag(args, 'tagSemver', true) && tag ? semverTags(tag) : [],
        ]

        List<String> requested = args.containsKey('platforms') ? stringList(args, 'platforms', null)
            : ['linux/amd64', 'linux/arm64']
        if (!requested) {
            throw new LibraryError(
                "platforms is empty: list at least one, e.g. platforms: ['linux/amd64', 'linux/arm64']")
        }
        Object emulation = args.allowEmulation
        String emulationLabel = null
        boolean allowEmulation
        if (emulation instanceof CharSequence) {
            emulationLabel = string(args, 'allowEmulation', null)
            allowEmulation = true
        } else {
            allowEmulation = flag(args, 'allowEmulation', false)
        }
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
            arch.localRef = "localhost/archfleet-build:${buildId}-${arch.tag}".toString()
            arches << arch
        }

        // buildah by default, as the GitLab component and archfleet's provisioning (inventory
        // builder.tool: buildah; Debian 12 does not package buildx).
        String builder = string(args, 'builder', 'buildah')
        if (!(builder in ['buildx', 'buildah'])) {
            throw new LibraryError("builder must be 'buildah' or 'buildx', not '${builder}'")
        }
        String context = string(args, 'context', '.')
        String dockerfile = string(args, 'dockerfile', "${context}/Dockerfile".toString())
        boolean discover = args.images == DISCOVER
        List<Map> images = null
        if (args.images != null) {
            for (String single : ['context', 'dockerfile']) {
                if (args[single] != null) {
                    throw new LibraryError("${single} belongs in each entry of images (images: [[name: 'app', " +
                        "context: 'app', dockerfile: 'app/Containerfile']]), not beside it")
                }
            }
            images = discover ? null : imageEntries(args.images, 'images')
        }
        Map discoverOptions = discoverOptions(args.discover, discover)
        // On by default where it can work, as the component's cache input: buildah writes a
        // registry cache itself; buildx's default docker driver cannot export one, so there it
        // stays off unless asked (with a docker-container builder on the agents).
        boolean cache = flag(args, 'cache', builder == 'buildah')
        String cacheRepository = null
        if (args.cacheRepository != null) {
            if (!cache) {
                throw new LibraryError("cacheRepository only applies with the cache on: cache: true (the " +
                    "default with builder 'buildah'; with 'buildx' it is off unless asked)")
            }
            cacheRepository = parseImage(string(args, 'cacheRepository', null)).repository
        }
        String smokeCommand = args.smokeCommand == null ? null : string(args, 'smokeCommand', null)
        if (smokeCommand != null && smokeCommand.contains('\u0000')) {
            throw new LibraryError('smokeCommand contains a NUL character')
        }
        // Which cache ref a build may write (ci-templates/src/build.sh archfleet_protected_pipeline):
        // a change request (env.CHANGE_ID, the merge request's twin) and a branch that is neither
        // the primary branch nor a tag read the protected cache but write only their own ref, so
        // they can never plant layers in what release builds reuse. A job that is not multibranch
        // (no BRANCH_NAME) is configured by its admins: it writes the protected ref.
        boolean cacheProtected = !build.CHANGE_ID && (tag != null || primary || !build.BRANCH_NAME)
        Map<String, String> buildArgs = buildArgMap(args.buildArgs)
        Object push = args.push
        if (push != null && !(push instanceof Boolean)) {
            throw new LibraryError("push must be true or false, not '${push}'")
        }
        boolean pushing = push != null ? push : (tag != null || primary)
        if (cache && builder == 'buildx' && !pushing) {
            warnings << ('multiArchBuild: push is off, so no registry login: this buildx build uses no ' +
                'registry cache (BuildKit fails a build whose cache import is refused)').toString()
        }
        String credentialsId = args.credentialsId == null ? null : string(args, 'credentialsId', null)
        String archfleet = args.archfleet == null ? null : string(args, 'archfleet', null)
        Map tool = toolImage(args)

        List<String> tags = releaseTags(tagPlan, build.GIT_COMMIT)
        return [
            image         : image.repository,
            registry      : image.registry,
            tagPlan       : tagPlan,
            tags          : tags,
            targets       : targetsOf(image.repository, tags),
            warnings      : warnings,
            primary       : primary,
            arches        : arches,
            platformList  : arches.collect { Map a -> a.platform }.join(','),
            builder       : builder,
            context       : context,
            dockerfile    : dockerfile,
            buildArgs     : buildArgs,
            buildArgsText : buildArgs.collect { String k, String v -> "${k}=${v}\n".toString() }.join(''),
            credentialsId : credentialsId,
            push          : pushing,
            allowEmulation: allowEmulation,
            emulationLabel: emulationLabel,
            agentTimeout  : count(args, 'agentTimeout', 60, 1, MAX_AGENT_TIMEOUT),
            agentRetries  : count(args, 'agentRetries', 1, 0, 10),
            lock          : flag(args, 'lock', true),
            lockResource  : "archfleet ${image.repository}".toString(),
            verify        : flag(args, 'verify', true),
            checkBinaries : flag(args, 'checkBinaries', true),
            insecure      : flag(args, 'insecure', false),
            childTags     : flag(args, 'childTags', true),
            checkBases    : flag(args, 'checkBases', true),
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
            name          : null,
            images        : images,
            discover      : discover,
            discoverOptions: discoverOptions,
            cache         : cache,
            cacheRepository: cache ? (cacheRepository ?: "${image.repository}/buildcache".toString()) : null,
            cacheRepositoryGiven: cacheRepository != null,
            cacheProtected: cacheProtected,
            smokeCommand  : smokeCommand,
        ]
    }

    /**
     * images: entries [name:, context:, dockerfile:] -> plain maps, context defaulting to '.',
     * dockerfile to context + '/Dockerfile'. A name is one repository path component (the
     * image is pushed to image + '/' + name), as `archfleet discover-images` names them
     * (toolkit/discover.py: the directory's slug; distribution/reference's pathComponent).
     * `what` names the source in errors: the argument or the discovery output.
     */
    @NonCPS
    static List<Map> imageEntries(Object value, String what) {
        if (!(value instanceof List) || !((List) value)) {
            throw new LibraryError("${what} must be 'discover' or a non-empty list of maps, e.g. " +
                "images: ${exampleOf('images')}")
        }
        List<Map> entries = []
        List<String> names = []
        int position = 0
        for (Object item : (List) value) {
            position++
            if (!(item instanceof Map)) {
                throw new LibraryError("${what}[${position}] must be a map [name:, context:, dockerfile:], not '${item}'")
            }
            Map entry = (Map) item
            List<String> unknown = []
            for (Object key : entry.keySet()) {
                if (!(key.toString() in ['name', 'context', 'dockerfile'])) {
                    unknown << key.toString()
                }
            }
            if (unknown) {
                throw new LibraryError("${what}[${position}] has unknown key(s) ${unknown.join(', ')}; known: name, context, dockerfile")
            }
            String name = pathText(entry.name, "${what}[${position}].name".toString())
            if (!(name ==~ COMPONENT)) {
                throw new LibraryError("${what}[${position}].name '${name}' must be one lowercase repository path " +
                    "component (a-z, 0-9, separated by '.', '_', '__' or '-'; e.g. 'jobs-job-a'): the image " +
                    'is pushed to image + \'/\' + name')
            }
            if (name in names) {
                throw new LibraryError("${what}: the name '${name}' is given twice; each image needs its own")
            }
            names << name
            String context = entry.context == null ? '.' : pathText(entry.context, "${what}[${position}].context".toString())
            String dockerfile = entry.dockerfile == null ? "${context}/Dockerfile".toString() :
                pathText(entry.dockerfile, "${what}[${position}].dockerfile".toString())
            entries << [name: name, context: context, dockerfile: dockerfile]
        }
        return entries
    }

    @NonCPS
    private static String pathText(Object value, String what) {
        if (!(value instanceof CharSequence) || !value.toString().trim()) {
            throw new LibraryError("${what} must be a non-empty string")
        }
        String text = value.toString().trim()
        if (text.contains('\n') || text.contains('\r')) {
            throw new LibraryError("${what} contains a line break")
        }
        return text
    }

    /** `archfleet discover-images --json` (a JSON list of {name, context, dockerfile}) -> entries. */
    @NonCPS
    static List<Map> discovered(String json) {
        Object parsed
        try {
            parsed = Platforms.plain(new JsonSlurper().parseText((json ?: '').trim() ?: 'null'))
        } catch (Exception e) {
            throw new LibraryError("archfleet discover-images --json printed no JSON list (${e.message})")
        }
        if (parsed instanceof List && !((List) parsed)) {
            throw new LibraryError('archfleet discover-images found no image (no directory with a Dockerfile or ' +
                'Containerfile in the checkout): list them with images: [[name:, context:, dockerfile:]]')
        }
        return imageEntries(parsed, 'archfleet discover-images')
    }

    /**
     * discover: the options of `archfleet discover-images` (toolkit/tasks/discover.py: --root,
     * --pattern and --exclude (each repeatable), --no-default-excludes, --root-name), by the same
     * names: root and rootName strings, pattern and exclude a string or a list of strings,
     * defaultExcludes true or false. Only with images: 'discover'. Paths stay inside the
     * workspace: root is relative and has no '..'.
     */
    @NonCPS
    static Map discoverOptions(Object value, boolean discover) {
        Map options = [root: '.', pattern: [], exclude: [], defaultExcludes: true, rootName: null]
        if (value == null) {
            return options
        }
        if (!discover) {
            throw new LibraryError("discover only applies with images: 'discover', e.g. images: 'discover', " +
                "discover: ${exampleOf('discover')}")
        }
        if (!(value instanceof Map)) {
            throw new LibraryError("discover must be a map of archfleet discover-images options, e.g. " +
                "discover: ${exampleOf('discover')}")
        }
        Map given = (Map) value
        List<String> unknown = []
        for (Object key : given.keySet()) {
            if (!(key.toString() in DISCOVER_KEYS)) {
                unknown << key.toString()
            }
        }
        if (unknown) {
            throw new LibraryError("discover has unknown key(s) ${unknown.join(', ')}; known: ${DISCOVER_KEYS.join(', ')}")
        }
        if (given.root != null) {
            String root = pathText(given.root, 'discover.root')
            boolean outside = root.startsWith('/')
            for (String part : root.split('/')) {
                outside = outside || part == '..'
            }
            if (outside) {
                throw new LibraryError("discover.root '${root}' must be a directory inside the workspace, " +
                    "relative and without '..', e.g. root: 'jobs'")
            }
            options.root = root
        }
        for (String key : ['pattern', 'exclude']) {
            Object globs = given[key]
            if (globs == null) {
                continue
            }
            List items = globs instanceof CharSequence ? [globs] : (globs instanceof List ? (List) globs : null)
            if (items == null || !items) {
                throw new LibraryError("discover.${key} must be a glob or a non-empty list of globs, e.g. " +
                    "${key}: ['legacy', 'jobs/*/test']")
            }
            List<String> texts = []
            int position = 0
            for (Object item : items) {
                position++
                texts << pathText(item, "discover.${key}[${position}]".toString())
            }
            options[key] = texts
        }
        if (given.defaultExcludes != null) {
            if (!(given.defaultExcludes instanceof Boolean)) {
                throw new LibraryError("discover.defaultExcludes must be true or false, not '${given.defaultExcludes}'")
            }
            options.defaultExcludes = given.defaultExcludes
        }
        if (given.rootName != null) {
            options.rootName = pathText(given.rootName, 'discover.rootName')
        }
        return options
    }

    /**
     * withEnv entries for resources/archfleet/discover-images.sh: the discover: options as
     * values of the environment (pattern and exclude one a line), never on the script's
     * command line; the script turns them into `--root=VALUE` arguments.
     */
    @NonCPS
    static List<String> discoverEnv(Map cfg, String work) {
        Map options = (Map) cfg.discoverOptions ?: discoverOptions(null, true)
        List<String> env = [
            "AF_OUT=${work}",
            "AF_DISCOVER_ROOT=${options.root}",
            "AF_DISCOVER_PATTERNS=${((List) options.pattern).join('\n')}",
            "AF_DISCOVER_EXCLUDES=${((List) options.exclude).join('\n')}",
            "AF_DISCOVER_DEFAULT_EXCLUDES=${options.defaultExcludes ? 1 : 0}",
            "AF_DISCOVER_ROOT_NAME=${options.rootName ?: ''}",
        ].collect { Object entry -> entry.toString() }
        env.addAll(Tool.commandEnv(cfg))
        return env
    }

    /**
     * The configuration of one image of `images` (an entry from imageEntries): the step's
     * configuration with the image's repository (image + '/' + name, as the GitLab child
     * pipeline of `archfleet discover-images --gitlab-child-pipeline` names it), context,
     * Dockerfile, lock, cache repository and merge targets.
     */
    @NonCPS
    static Map forImage(Map cfg, Map entry) {
        Map copy = [:]
        for (Object key : cfg.keySet()) {
            copy.put(key, cfg.get(key))
        }
        String repository = "${cfg.image}/${entry.name}".toString()
        copy.put('name', entry.name.toString())
        copy.put('image', repository)
        copy.put('context', entry.context.toString())
        copy.put('dockerfile', entry.dockerfile.toString())
        copy.put('lockResource', "archfleet ${repository}".toString())
        copy.put('targets', targetsOf(repository, (List<String>) cfg.tags))
        if (cfg.cache) {
            copy.put('cacheRepository', cfg.cacheRepositoryGiven ? "${cfg.cacheRepository}/${entry.name}".toString() :
                "${repository}/buildcache".toString())
        }
        return copy
    }

    /**
     * The registry cache options of one platform's build, as the GitLab component sets them
     * (ci-templates/src/build.sh archfleet_cache_ref/archfleet_cache_args): one ref per arch (a
     * registry cache ref holds one build's cache, so arches sharing one would overwrite each
     * other's); buildx names it REPO:ARCH, buildah REPO/ARCH (buildah's --cache-from/--cache-to
     * take a repository). A protected build reads and writes that ref; any other build reads it
     * and its own `unprotected-ARCH` ref, and writes only its own. A build that pushes nothing
     * (push off: a change request or branch without push: true) has no registry login (no
     * credential is bound), so it must not depend on one. buildah: it only reads, AF_CACHE_FROM
     * without AF_CACHE_TO; a failed read costs a rebuild, never the build (buildah's
     * imagebuildah/stage_executor.go ignores a failed pullCache, while a failed pushCache fails
     * the build, hence no write). buildx: no cache at all, since BuildKit fails the build on a
     * refused cache import ("failed to configure registry cache importer: ... authorization
     * failed", moby/buildkit#3179). Returns withEnv entries AF_CACHE_FROM (space-separated) and
     * AF_CACHE_TO; none when cache is off.
     */
    @NonCPS
    static List<String> cacheEnv(Map cfg, Map arch) {
        if (!cfg.cache) {
            return []
        }
        boolean buildx = cfg.builder == 'buildx'
        if (buildx && !cfg.push) {
            return []
        }
        String separator = buildx ? ':' : '/'
        String suffix = buildx && cfg.insecure ? ',registry.insecure=true' : ''
        String own = "${cfg.cacheRepository}${separator}${arch.tag}".toString()
        List<String> from = [own]
        String to = own
        if (!cfg.cacheProtected) {
            to = "${cfg.cacheRepository}${separator}unprotected-${arch.tag}".toString()
            from << to
        }
        List<String> options = []
        for (String ref : from) {
            options << (buildx ? "type=registry,ref=${ref}${suffix}".toString() : ref)
        }
        List<String> env = ["AF_CACHE_FROM=${options.join(' ')}".toString()]
        if (cfg.push) {
            env << "AF_CACHE_TO=${buildx ? "type=registry,ref=${to},mode=max${suffix}" : to}".toString()
        }
        return env
    }

    /**
     * The tags the merge writes, as the GitLab component chooses them (ci-templates/templates/
     * multiarch.yml archfleet_release_tags): image_tags (default the short commit SHA and the
     * ref slug; empty ones skipped), `latest` on the primary branch, the semver floats of a
     * version tag; the image's own ':tag' first; each once. `commit` may be null (not known
     * before checkout): then no SHA tag.
     */
    @NonCPS
    static List<String> releaseTags(Map tagPlan, Object commit) {
        List<String> tags = []
        if (tagPlan.imageTag) {
            tags << tagPlan.imageTag.toString()
        }
        if (tagPlan.explicit != null) {
            tags.addAll((List<String>) tagPlan.explicit)
        } else {
            String sha = shortSha(commit)
            if (sha) {
                tags << sha
            }
            if (tagPlan.slug) {
                tags << tagPlan.slug.toString()
            }
        }
        if (tagPlan.latest) {
            tags << 'latest'
        }
        tags.addAll((List<String>) tagPlan.semver)
        List<String> unique = []
        for (String tag : tags) {
            if (!(tag in unique)) {
                unique << tag
            }
        }
        return unique
    }

    @NonCPS
    static List<String> targetsOf(Object repository, List<String> tags) {
        List<String> targets = []
        for (String tag : tags) {
            targets << "${repository}:${tag}".toString()
        }
        return targets
    }

    /**
     * The tags and references of the merge once the commit is known (checkout's GIT_COMMIT);
     * fails when there is no tag at all to write.
     */
    @NonCPS
    static Map finalTags(Map cfg, Object commit) {
        List<String> tags = releaseTags((Map) cfg.tagPlan, commit)
        if (!tags) {
            throw new LibraryError('no image tag to write: no commit SHA (checkout: false and no ' +
                'env.GIT_COMMIT) and no branch or tag name (not a multibranch job); pass imageTags, ' +
                "e.g. imageTags: ${exampleOf('imageTags')}")
        }
        return [tags: tags, targets: targetsOf(cfg.image, tags)]
    }

    /** GitLab's CI_COMMIT_SHORT_SHA: the first 8 hex digits of the commit; null if none. */
    @NonCPS
    static String shortSha(Object commit) {
        String text = commit == null ? '' : commit.toString().trim().toLowerCase()
        return text ==~ /[0-9a-f]{8,64}/ ? text.substring(0, 8) : null
    }

    /**
     * GitLab's CI_COMMIT_REF_SLUG: lower case, every character but 0-9 and a-z replaced by
     * '-', at most 63 characters, no '-' at either end (null when nothing is left).
     */
    @NonCPS
    static String refSlug(Object ref) {
        String text = ref == null ? '' : ref.toString().toLowerCase().replaceAll(/[^0-9a-z]/, '-')
        text = text.length() > 63 ? text.substring(0, 63) : text
        text = text.replaceAll(/^-+/, '').replaceAll(/-+$/, '')
        return text ? text : null
    }

    /** v1.4.2 -> 1.4.2, 1.4, 1; v2.0.0-rc.1 -> 2.0.0-rc.1 only; anything else -> nothing. */
    @NonCPS
    static List<String> semverTags(String gitTag) {
        String version = gitTag.startsWith('v') ? gitTag.substring(1) : gitTag
        int plus = version.indexOf('+')
        version = plus >= 0 ? version.substring(0, plus) : version
        def match = (version =~ /^((0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*))(-[0-9A-Za-z.-]+)?$/)
        if (!match.matches()) {
            return []
        }
        if (match.group(5)) {
            return [version]
        }
        return [match.group(1), "${match.group(2)}.${match.group(3)}".toString(), match.group(2)]
    }

    /** withEnv entries for one platform's build script (resources/archfleet/build.sh). */
    @NonCPS
    static List<String> buildEnv(Map cfg, Map arch, String work) {
        String localRef = arch.localRef.toString()
        if (cfg.name) {
            // Images of one run may build on one agent at once: each its own local repository.
            localRef = "localhost/archfleet-build/${cfg.name}:${localRef.substring(localRef.indexOf(':') + 1)}".toString()
        }
        List<String> env = [
            "AF_PLATFORM=${arch.platform}",
            "AF_TAG_SUFFIX=${arch.tag}",
            "AF_BUILDER=${cfg.builder}",
            "AF_IMAGE=${cfg.image}",
            "AF_REGISTRY=${cfg.registry}",
            "AF_CONTEXT=${cfg.context}",
            "AF_DOCKERFILE=${cfg.dockerfile}",
            "AF_OUT=${work}",
            "AF_LOCAL_REF=${localRef}",
            "AF_PUSH=${cfg.push ? 1 : 0}",
            "AF_INSECURE=${cfg.insecure ? 1 : 0}",
        ].collect { Object entry -> entry.toString() }
        env.addAll(cacheEnv(cfg, arch))
        return env
    }

    /**
     * withEnv entries for the smoke run of one platform (build.sh with AF_ACTION=smoke): the
     * merged index by digest, pulled as that platform, `smokeCommand` run in it with sh -c.
     */
    @NonCPS
    static List<String> smokeEnv(Map cfg, Map arch, String index, String work) {
        return [
            'AF_ACTION=smoke',
            "AF_PLATFORM=${arch.platform}",
            "AF_OS=${arch.os}",
            "AF_ARCHITECTURE=${arch.architecture}",
            "AF_VARIANT=${arch.variant ?: ''}",
            "AF_BUILDER=${cfg.builder}",
            "AF_REGISTRY=${cfg.registry}",
            "AF_SMOKE_REF=${cfg.image}@${index}",
            "AF_SMOKE_COMMAND=${cfg.smokeCommand}",
            "AF_OUT=${work}",
            "AF_INSECURE=${cfg.insecure ? 1 : 0}",
        ].collect { Object entry -> entry.toString() }
    }

    /**
     * withEnv entries for resources/archfleet/check-bases.sh in the preflight: `work` holds the
     * build-args file (values reach archfleet through its environment, as they reach the
     * builder); dockerConfig: the private docker config with the image registry's login, or null.
     */
    @NonCPS
    static List<String> checkBasesEnv(Map cfg, String work, String dockerConfig = null) {
        List<String> env = [
            "AF_OUT=${work}",
            "AF_PLATFORMS=${cfg.platformList}",
            "AF_DOCKERFILE=${cfg.dockerfile}",
            "AF_INSECURE=${cfg.insecure ? 1 : 0}",
        ].collect { Object entry -> entry.toString() }
        env.addAll(Tool.commandEnv(cfg))
        if (dockerConfig != null) {
            env << "DOCKER_CONFIG=${dockerConfig}".toString()
        }
        return env
    }

    /**
     * The OCI annotations of the index (org.opencontainers.image.source, .revision, .created),
     * as merge.sh's environment; an unknown value is left out. `url`: the checkout's GIT_URL
     * (its userinfo removed: a token in a clone URL must not land in the registry); `commit`:
     * the full commit; `startMillis`: currentBuild.startTimeInMillis (merge.sh turns it into
     * RFC 3339 UTC with `date -u`: no date formatting class in the sandbox needed).
     */
    @NonCPS
    static List<String> annotationEnv(Object url, Object commit, Object startMillis) {
        List<String> env = []
        String source = sourceUrl(url)
        if (source) {
            env << "AF_ANNOTATION_SOURCE=${source}".toString()
        }
        String revision = commit == null ? '' : commit.toString().trim().toLowerCase()
        if (revision ==~ /[0-9a-f]{7,64}/) {
            env << "AF_ANNOTATION_REVISION=${revision}".toString()
        }
        String millis = startMillis == null ? '' : startMillis.toString().trim()
        if (millis ==~ /[1-9][0-9]{0,15}/) {
            env << "AF_ANNOTATION_CREATED_MILLIS=${millis}".toString()
        }
        return env
    }

    /**
     * A clone URL without its userinfo ('https://user:token@host/x.git' -> 'https://host/x.git';
     * scp-like 'git@host:team/x.git' -> 'ssh://host/team/x.git'); null when empty or not a
     * URL, or it holds a line break or a space.
     */
    @NonCPS
    static String sourceUrl(Object url) {
        String text = url == null ? '' : url.toString().trim()
        if (!(text ==~ /\S+/)) {
            return null
        }
        def full = (text =~ /^([A-Za-z][A-Za-z0-9+.-]*:\/\/)(?:[^\/@]*@)?(.+)$/)
        if (full.matches()) {
            return "${full.group(1)}${full.group(2)}".toString()
        }
        def scp = (text =~ /^(?:[^\/@:]+@)?([A-Za-z0-9.-]+):(?!\/\/)(.+)$/)
        if (scp.matches()) {
            String path = scp.group(2)
            return "ssh://${scp.group(1)}/${path.startsWith('/') ? path.substring(1) : path}".toString()
        }
        return null
    }

    /**
     * withEnv entries for the merge script (resources/archfleet/merge.sh); `work` is its
     * directory outside the workspace (pwd(tmp: true)). dockerConfig: the
     * directory of the private docker config holding the push login, for a merge in
     * archfleetImage (null otherwise: the login comes as REGISTRY_USER/REGISTRY_PASSWORD).
     */
    @NonCPS
    static List<String> mergeEnv(Map cfg, Map digests, String work, String dockerConfig = null,
            List<String> annotations = []) {
        List<String> sources = []
        for (Map arch : (List<Map>) cfg.arches) {
            Object digest = digests[arch.platform]
            if (digest == null) {
                throw new LibraryError("no digest came back from the ${arch.platform} build")
            }
            sources << Digests.source(arch.platform.toString(), digest.toString())
        }
        List<String> env = [
            "AF_OUT=${work}",
            "AF_TARGETS=${((List) cfg.targets).join(' ')}",
            "AF_SOURCES=${sources.join(' ')}",
            "AF_PLATFORMS=${cfg.platformList}",
            "AF_INSECURE=${cfg.insecure ? 1 : 0}",
            "AF_CHILD_TAGS=${cfg.childTags ? 1 : 0}",
            "AF_VERIFY=${cfg.verify ? 1 : 0}",
            "AF_CHECK_BINARIES=${cfg.checkBinaries ? 1 : 0}",
        ].collect { Object entry -> entry.toString() }
        env.addAll(annotations ?: [])
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
            if (name in RESERVED_BUILD_ARGS || name.startsWith('AF_')) {
                throw new LibraryError("build arg name '${name}' is reserved (the build scripts use it); " +
                    "rename it in the Dockerfile's ARG and in buildArgs")
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
    private static int count(Map args, String name, int fallback, int least, int most) {
        Object value = args[name]
        if (value == null) {
            return fallback
        }
        if (!(value instanceof Integer) || (Integer) value < least || (Integer) value > most) {
            throw new LibraryError("${name} must be a whole number from ${least} to ${most}, not '${value}'")
        }
        return (Integer) value
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
        text = text ?: 'local'
        // substring, not take(): the whitelist lists take(CharSequence, int) under DefaultGroovyMethods only.
        return text.length() > 100 ? text.substring(0, 100) : text
    }
}
