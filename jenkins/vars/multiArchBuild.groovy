import archfleet.Config
import archfleet.Digests
import archfleet.LibraryError
import archfleet.Platforms
import archfleet.Tool

/*
 * multiArchBuild: a multi-arch image, each platform built natively on its own agent.
 *
 * First, when the build will push, a preflight on the merge agent: archfleet must be there (on
 * the agent, or in archfleetImage) and be this library's version (resources/archfleet/
 * version.txt), and (checkBases) every base image of the Dockerfile must offer every platform
 * (`archfleet check-bases`), else the build fails before any build agent is taken. Then one parallel branch
 * per platform, each inside node(<that arch's label>): checkout, native guard (`uname -m` must
 * be the platform's), build, push BY DIGEST (no tag). The digests come back here; only when
 * every branch succeeded does ONE merge write the index under all tags, then verify it.
 * Returns [pushed:, digests: [platform: digest], index:, tags:].
 * images: (a list of [name:, context:, dockerfile:], or 'discover': `archfleet discover-images`
 * in the preflight) does all of that for many images at once: one parallel branch per image x
 * platform, and only when ALL built, one merge per image (image + '/' + name, its own lock);
 * returns [name: that map]. smokeCommand: after the merge, the merged index run per platform on
 * its own agent. cache: a registry build cache per arch (protected refs apart from change
 * requests), named as the GitLab component names them.
 * Arguments: vars/multiArchBuild.txt. Pure logic lives in src/archfleet (no CPS needed there),
 * shell in resources/archfleet; scripts get their inputs as environment variables, and
 * registry secrets only ever through withCredentials (for a merge in archfleetImage, as a
 * private docker config file written under it: see mergeAndVerify).
 */
def call(Map args = [:]) {
    String arches = libraryResource('archfleet/arches.json')
    Map cfg = configure(args, arches)
    for (int w = 0; w < cfg.warnings.size(); w++) {
        echo(cfg.warnings[w])
    }
    String version = toolVersion()
    // One image (image/context/dockerfile), or images: each a configuration of its own.
    List<Map> images = cfg.images == null ? [cfg] : perImage(cfg, cfg.images)
    if (cfg.push || cfg.discover) {
        // Before any build agent is taken: a missing or wrong archfleet, or a base image without
        // one of the platforms, would otherwise fail only after agents were taken and minutes spent.
        List<Map> found = preflight(cfg, version, images)
        if (cfg.discover) {
            images = perImage(cfg, found)
        }
    }
    String buildScript = libraryResource('archfleet/build.sh')
    // digests: [platform: digest] per image (by name; '' for the one image of a plain call).
    Map digests = [:]
    Map commits = [:]
    Map branches = [failFast: cfg.failFast]
    for (int m = 0; m < images.size(); m++) {
        Map image = images[m]
        Map imageDigests = [:]
        digests[image.name ?: ''] = imageDigests
        for (int i = 0; i < cfg.arches.size(); i++) {
            Map arch = cfg.arches[i]
            branches[image.name ? "${image.name} ${arch.platform}".toString() : arch.platform] = {
                buildBranch(image, arch, arches, buildScript, imageDigests, commits)
            }
        }
    }
    // Every image x platform in one parallel step: when any fails, no image is merged at all.
    parallel(branches)
    if (!cfg.push) {
        boolean many = cfg.images != null || cfg.discover
        String what = many ? "${names(images)} for ${cfg.platformList}" : cfg.platformList
        echo("multiArchBuild: built ${what}; push is off (pushes on the primary branch " +
            'and tag builds, or with push: true), so nothing was pushed or merged')
        if (many) {
            return notPushedByName(images)
        }
        return [pushed: false, digests: [:], index: null, tags: []]
    }
    Map tags = releaseTags(cfg, commits)
    cfg.tags = tags.tags
    cfg.targets = tags.targets
    // pipeline-milestone-step: a build passing this milestone aborts every older build of the
    // job that has not passed it yet, and an older build that arrives later is cancelled here,
    // so an older build can never move a tag after a newer one has.
    milestone(label: "archfleet merge ${cfg.image}")
    List<String> annotations = Config.annotationEnv(
        firstOf(cfg, commits, 'GIT_URL', env.GIT_URL),
        firstOf(cfg, commits, 'GIT_COMMIT', env.GIT_COMMIT),
        currentBuild.startTimeInMillis)
    Map results = [:]
    Map indexes = [:]
    // One merge per image, in order, each under its own lock: an image's tags are all written
    // by its one merge-manifest run. A failing merge stops here: the images merged before it
    // are complete, the ones after it untouched.
    for (int m = 0; m < images.size(); m++) {
        Map image = images[m]
        image.tags = tags.tags
        image.targets = image.name ? Config.targetsOf(image.image, tags.tags) : tags.targets
        String index = null
        withImageLock(image) {
            index = mergeAndVerify(image, digests[image.name ?: ''], version, annotations)
        }
        indexes[image.name ?: ''] = index
        results[image.name ?: ''] = [pushed: true, digests: digests[image.name ?: ''], index: index,
                                     tags: image.targets]
    }
    if (cfg.smokeCommand) {
        smoke(images, arches, buildScript, indexes)
    }
    return cfg.images == null && !cfg.discover ? results[''] : results
}

/** The configuration of each image of images: (see Config.forImage). */
def perImage(Map cfg, List<Map> entries) {
    List<Map> images = []
    for (int m = 0; m < entries.size(); m++) {
        images << Config.forImage(cfg, entries[m])
    }
    return images
}

def names(List<Map> images) {
    List<String> found = []
    for (int m = 0; m < images.size(); m++) {
        found << images[m].name.toString()
    }
    return found.join(', ')
}

/** What a run that pushes nothing returns for each image, by name. */
def notPushedByName(List<Map> images) {
    Map result = [:]
    for (int m = 0; m < images.size(); m++) {
        result[images[m].name] = [pushed: false, digests: [:], index: null, tags: []]
    }
    return result
}

def configure(Map args, String arches) {
    try {
        return Config.parse(args, arches, [
            BRANCH_NAME      : env.BRANCH_NAME,
            BRANCH_IS_PRIMARY: env.BRANCH_IS_PRIMARY,
            TAG_NAME         : env.TAG_NAME,
            GIT_COMMIT       : env.GIT_COMMIT,
            BUILD_TAG        : env.BUILD_TAG,
            CHANGE_ID        : env.CHANGE_ID,
        ])
    } catch (LibraryError e) {
        error("multiArchBuild: ${e.message}")
    }
}

def toolVersion() {
    try {
        return Tool.version(libraryResource('archfleet/version.txt'))
    } catch (LibraryError e) {
        error("multiArchBuild: ${e.message}")
    }
}

/**
 * node(label) inside timeout(agentTimeout minutes): Jenkins' queue waits for an agent forever,
 * so without it a platform with no agent hangs the build. The timeout covers the wait and the
 * work. When it ends the block before the agent was reached (TimeoutStep interrupts the body
 * with FlowInterruptedException; so does an abort), the error names the label that had no
 * agent. Returns the body's value.
 */
def onAgent(Map cfg, String label, String purpose, Closure body) {
    Map reached = [started: false]
    try {
        return timeout(time: cfg.agentTimeout, unit: 'MINUTES') {
            node(label) {
                reached.started = true
                body()
            }
        }
    } catch (InterruptedException e) {
        if (reached.started) {
            throw e
        }
        error("multiArchBuild: no agent with label '${label}' came online for ${purpose} within " +
            "${cfg.agentTimeout} minutes (agentTimeout), or the build was aborted while waiting. " +
            "Add an agent with that label, or name a fallback label for emulated builds with " +
            "allowEmulation: '<label>'")
    }
}

/**
 * On the merge agent (in archfleetImage when given): archfleet must be there, of `version`; with
 * images: 'discover', `archfleet discover-images` lists the images of the checkout there; with
 * checkBases (when the build pushes), the sources are checked out there and every base of every
 * image's Dockerfile must offer every platform. Returns the discovered entries (discover) or null.
 */
def preflight(Map cfg, String version, List<Map> images) {
    String checkScript = libraryResource('archfleet/check-tool.sh')
    List<Map> found = null
    stage('archfleet preflight') {
        onAgent(cfg, cfg.mergeLabel, 'the archfleet preflight') {
            boolean bases = cfg.push && cfg.checkBases
            if (!bases && !cfg.discover) {
                withArchfleet(cfg) {
                    checkTool(cfg, version, checkScript)
                }
                return
            }
            found = checkBases(cfg, version, checkScript, images, bases)
        }
    }
    return found
}

/**
 * `archfleet check-bases` on each checked-out Dockerfile, with the build args as the build gets
 * them (values through the environment); first, with discover, `archfleet discover-images`
 * (whose images are then the ones checked). Registry login: with credentialsId, the push login
 * as a private docker config holding the image registry's entry only (never REGISTRY_USER/
 * REGISTRY_PASSWORD, which archfleet would send to every base's registry), so a private base
 * in the image's own registry can be read; bases elsewhere are read with the login of the
 * tool's environment (anonymous in archfleetImage). Returns the discovered entries or null.
 */
def checkBases(Map cfg, String version, String checkScript, List<Map> images, boolean bases) {
    String basesScript = libraryResource('archfleet/check-bases.sh')
    if (cfg.checkout) {
        checkout(cfg.scm ?: scm)
    }
    String work = "${pwd(tmp: true)}/archfleet-preflight".toString()
    String dockerConfig = bases && cfg.credentialsId ? "${work}/registry".toString() : null
    List<String> problems = []
    List<Map> found = null
    List<Map> checked = images
    try {
        withEnv(["AF_WORK=${work}".toString()]) {
            sh(label: 'prepare preflight work directory',
                script: 'set +x; rm -rf "$AF_WORK" && mkdir -p "$AF_WORK" && chmod 700 "$AF_WORK"')
        }
        writeFile(file: "${work}/build-args", text: cfg.buildArgsText)
        if (dockerConfig != null) {
            writeDockerConfig(cfg, dockerConfig)
        }
        withArchfleet(cfg) {
            checkTool(cfg, version, checkScript)
            if (cfg.discover) {
                found = discoverImages(cfg, work)
                checked = perImage(cfg, found)
            }
            for (int m = 0; bases && m < checked.size(); m++) {
                Map image = checked[m]
                int code = 0
                String label = image.name ? "archfleet check-bases ${image.name}" : 'archfleet check-bases'
                withEnv(Config.checkBasesEnv(image, work, dockerConfig)) {
                    code = sh(label: label, script: basesScript, returnStatus: true)
                }
                if (code != 0) {
                    String problem = Tool.basesProblem(image.dockerfile, cfg.platformList,
                        readFile("${work}/check-bases.err"))
                    problems << (image.name ? "image ${image.name}: ${problem}".toString() : problem)
                }
            }
        }
    } finally {
        withEnv(["AF_WORK=${work}".toString()]) {
            sh(label: 'remove preflight work directory and registry login', script: 'set +x; rm -rf "$AF_WORK"')
        }
    }
    if (problems) {
        error("multiArchBuild: ${problems.join('\n')}")
    }
    return found
}

/**
 * `archfleet discover-images --json` in the checkout (the same naming as the GitLab child
 * pipeline: toolkit/discover.py), with the discover: options (root, pattern, exclude, ...) as
 * environment values (resources/archfleet/discover-images.sh), its list read back from a file
 * in the preflight's work directory (stdout would carry the tool's other output too).
 */
def discoverImages(Map cfg, String work) {
    String discoverScript = libraryResource('archfleet/discover-images.sh')
    int code = 0
    withEnv(Config.discoverEnv(cfg, work)) {
        code = sh(label: 'archfleet discover-images', script: discoverScript, returnStatus: true)
    }
    if (code != 0) {
        error("multiArchBuild: archfleet discover-images failed (exit code ${code}; its message is above), " +
            "searching '${cfg.discoverOptions.root}' (discover:); no image was built")
    }
    List<Map> found = null
    try {
        found = Config.discovered(readFile("${work}/images.json"))
    } catch (LibraryError e) {
        error("multiArchBuild: ${e.message}")
    }
    echo("multiArchBuild: archfleet discover-images found ${found.size()} image(s): ${names(perImage(cfg, found))}")
    return found
}

def checkTool(Map cfg, String version, String checkScript) {
    String output = null
    withEnv(Tool.commandEnv(cfg)) {
        output = sh(label: 'archfleet --version', script: checkScript, returnStdout: true)
    }
    String problem = Tool.problem(version, output, cfg, env.NODE_NAME)
    if (problem != null) {
        error("multiArchBuild: ${problem}")
    }
    echo("multiArchBuild: archfleet ${version} ${Tool.where(cfg, env.NODE_NAME)}")
}

/**
 * Runs body where archfleet is: in archfleetImage with Docker Pipeline's
 * docker.image(...).inside (its sh steps become `docker exec` in a container of the image, with
 * the workspace mounted), else on the agent itself. A private image is pulled inside
 * docker.withRegistry only, so its login never reaches the container.
 */
def withArchfleet(Map cfg, Closure body) {
    if (!cfg.archfleetImage) {
        return body()
    }
    if (cfg.archfleetImageCredentialsId) {
        docker.withRegistry(cfg.archfleetImageRegistryUrl, cfg.archfleetImageCredentialsId) {
            docker.image(cfg.archfleetImage).pull()
        }
    }
    return docker.image(cfg.archfleetImage).inside(cfg.archfleetImageArgs) {
        body()
    }
}

/**
 * One platform's parallel branch. retry(conditions: [agent()]) starts it again on another agent
 * when the agent is lost mid-build (workflow-durable-task-step's AgentErrorCondition); a failing
 * build is not retried. With allowEmulation: '<label>', a platform with no native agent within
 * agentTimeout builds on that label instead, under emulation.
 */
def buildBranch(Map cfg, Map arch, String arches, String buildScript, Map digests, Map commits) {
    retry(count: cfg.agentRetries + 1, conditions: [agent(), nonresumable()]) {
        onPlatform(cfg, arch, arch.platform, 'building') { boolean emulated ->
            buildPlatform(cfg, arch, arches, buildScript, digests, commits, emulated)
        }
    }
}

/**
 * body(emulated) on an agent of the platform's label, or (allowEmulation: '<label>') on the
 * fallback label when no native agent came online within agentTimeout.
 */
def onPlatform(Map cfg, Map arch, String purpose, String doing, Closure body) {
    if (cfg.emulationLabel == null) {
        onAgent(cfg, arch.label, purpose) {
            body(false)
        }
        return
    }
    Map reached = [native: false]
    try {
        onAgent(cfg, arch.label, purpose) {
            reached.native = true
            body(false)
        }
    } catch (e) {
        if (reached.native) {
            throw e
        }
        echo("multiArchBuild: WARNING: no native agent for ${arch.platform} (label '${arch.label}'); " +
            "${doing} it under emulation on label '${cfg.emulationLabel}' (allowEmulation)")
        onAgent(cfg, cfg.emulationLabel, "${purpose} (emulated)") {
            body(true)
        }
    }
}

def buildPlatform(Map cfg, Map arch, String arches, String buildScript, Map digests, Map commits,
        boolean emulated) {
    // With images:, every name says which image: the stage, the work directory, the failure.
    String what = cfg.name ? "${cfg.name} ${arch.platform}" : arch.platform
    stage("build ${what}") {
        // First, before checkout: a wrong machine fails in seconds, having fetched nothing.
        nativeGuard(cfg, arch, arches, emulated)
        if (cfg.checkout) {
            Map scmVars = checkout(cfg.scm ?: scm)
            commits[arch.platform] = [GIT_COMMIT: scmVars?.GIT_COMMIT, GIT_URL: scmVars?.GIT_URL]
        }
        // Work files (build args, digests, layouts) go to the workspace's @tmp sibling
        // (pwd(tmp: true), WorkspaceList.tempDir): never into the build context, removed below.
        String work = "${pwd(tmp: true)}/archfleet-${cfg.name ? "${cfg.name}-" : ''}${arch.tag}".toString()
        try {
            withEnv(["AF_WORK=${work}".toString()]) {
                sh(label: "prepare ${what} work directory",
                    script: 'set +x; rm -rf "$AF_WORK" && mkdir -p "$AF_WORK" && chmod 700 "$AF_WORK"')
            }
            writeFile(file: "${work}/build-args", text: cfg.buildArgsText)
            withEnv(Config.buildEnv(cfg, arch, work)) {
                withRegistryCredentials(cfg, cfg.push) {
                    if (!cfg.name) {
                        sh(label: "build ${what} (${cfg.builder})", script: buildScript)
                        return
                    }
                    // The run's error is the first failing branch's: it must say which image.
                    int code = sh(label: "build ${what} (${cfg.builder})", script: buildScript, returnStatus: true)
                    if (code != 0) {
                        error("multiArchBuild: the build of image ${cfg.name} (${cfg.image}) for ${arch.platform} " +
                            "failed (exit code ${code}, its log is above); no image is merged, no tag is written")
                    }
                }
            }
            if (cfg.push) {
                String file = "${work}/${cfg.builder == 'buildx' ? 'metadata.json' : 'digest'}"
                digests[arch.platform] = digestFrom(readFile(file), "${what} build (${file})")
            }
        } finally {
            withEnv(["AF_WORK=${work}".toString()]) {
                sh(label: "remove ${what} work directory", script: 'set +x; rm -rf "$AF_WORK"')
            }
        }
    }
}

/**
 * smokeCommand, after every merge: one parallel branch per image x platform, each on that
 * platform's own agent (native guard first), pulls the merged index BY DIGEST as that platform
 * and runs the command in it (resources/archfleet/build.sh, AF_ACTION=smoke), as the GitLab
 * component's smoke jobs do after its merge (ci-templates/src/smoke.sh). A failure fails the
 * build naming the image and platform; the tags stay written (as in the component).
 */
def smoke(List<Map> images, String arches, String buildScript, Map indexes) {
    Map cfg = images[0]
    Map branches = [failFast: cfg.failFast]
    for (int m = 0; m < images.size(); m++) {
        Map image = images[m]
        String index = indexes[image.name ?: '']
        for (int i = 0; i < cfg.arches.size(); i++) {
            Map arch = cfg.arches[i]
            String what = image.name ? "${image.name} ${arch.platform}" : arch.platform
            branches["smoke ${what}".toString()] = {
                retry(count: cfg.agentRetries + 1, conditions: [agent(), nonresumable()]) {
                    onPlatform(image, arch, "the ${what} smoke run", 'running') { boolean emulated ->
                        smokePlatform(image, arch, arches, buildScript, index, what, emulated)
                    }
                }
            }
        }
    }
    parallel(branches)
}

def smokePlatform(Map cfg, Map arch, String arches, String buildScript, String index, String what,
        boolean emulated) {
    stage("smoke ${what}") {
        nativeGuard(cfg, arch, arches, emulated)
        String work = "${pwd(tmp: true)}/archfleet-smoke-${cfg.name ? "${cfg.name}-" : ''}${arch.tag}".toString()
        String output = null
        int code = 0
        try {
            withEnv(["AF_WORK=${work}".toString()]) {
                sh(label: "prepare ${what} smoke work directory",
                    script: 'set +x; rm -rf "$AF_WORK" && mkdir -p "$AF_WORK" && chmod 700 "$AF_WORK"')
            }
            withEnv(Config.smokeEnv(cfg, arch, index, work)) {
                withRegistryCredentials(cfg, true) {
                    code = sh(label: "smoke ${what} (${cfg.builder})", script: buildScript, returnStatus: true)
                }
            }
            if (code == 0) {
                output = readFile("${work}/smoke.out")
            }
        } finally {
            withEnv(["AF_WORK=${work}".toString()]) {
                sh(label: "remove ${what} smoke work directory", script: 'set +x; rm -rf "$AF_WORK"')
            }
        }
        String problem = Platforms.smokeProblem(Platforms.parseTable(arches), arch, cfg.smokeCommand,
            "${cfg.image}@${index}".toString(), code, output)
        if (problem != null) {
            error("multiArchBuild: smoke run ${cfg.name ? "of image ${cfg.name} " : ''}for ${arch.platform}: ${problem}")
        }
        echo("multiArchBuild: smoke run ${what}: '${cfg.smokeCommand}' -> ${Platforms.lastLine(output)}")
    }
}

/**
 * The machine that builds must be the platform's: `uname -m` of the agent, and for buildx also
 * the builder's own platforms (`docker buildx inspect`: a remote builder or DOCKER_HOST builds
 * elsewhere than the agent).
 */
def nativeGuard(Map cfg, Map arch, String arches, boolean emulated) {
    String machine = sh(label: 'native guard: uname -m', script: 'set +x; uname -m', returnStdout: true).trim()
    Map table = Platforms.parseTable(arches)
    String problem = Platforms.guard(table, arch, machine, arch.label, env.NODE_NAME)
    if (problem == null && cfg.builder == 'buildx') {
        String inspect = sh(label: 'native guard: docker buildx inspect',
            script: 'set +x; docker buildx inspect --bootstrap', returnStdout: true)
        problem = Platforms.builderGuard(arch, inspect)
    }
    if (problem == null) {
        return
    }
    if (!cfg.allowEmulation) {
        error("multiArchBuild: ${problem}. Label agents by their real CPU, or pass " +
            'allowEmulation: true to accept an emulated (QEMU) build')
    }
    echo("multiArchBuild: WARNING: ${problem}; building under emulation (allowEmulation)")
}

/** The merge's tags, now that checkout has told the commit (each branch checked out the same). */
def releaseTags(Map cfg, Map commits) {
    Object commit = firstOf(cfg, commits, 'GIT_COMMIT', env.GIT_COMMIT)
    try {
        return Config.finalTags(cfg, commit)
    } catch (LibraryError e) {
        error("multiArchBuild: ${e.message}")
    }
}

/** What the first platform's checkout said of `key` (GIT_COMMIT, GIT_URL), else `fallback`. */
def firstOf(Map cfg, Map commits, String key, Object fallback) {
    for (int i = 0; i < cfg.arches.size(); i++) {
        Map seen = commits[cfg.arches[i].platform]
        if (seen && seen[key]) {
            return seen[key]
        }
    }
    return fallback
}

/**
 * lock(resource) from Lockable Resources, one resource per image, around the merge: two jobs
 * (or branches) that write the same image merge one after the other. Without the plugin the
 * step `lock` does not exist (NoSuchMethodError from the CPS script): merge without it.
 */
def withImageLock(Map cfg, Closure body) {
    if (!cfg.lock) {
        return body()
    }
    Map entered = [body: false]
    try {
        return lock(resource: cfg.lockResource) {
            entered.body = true
            body()
        }
    } catch (NoSuchMethodError e) {
        if (entered.body) {
            throw e
        }
        echo("multiArchBuild: the Lockable Resources plugin is not installed: merging without the " +
            "lock '${cfg.lockResource}' (the milestone still orders this job's builds)")
        return body()
    }
}

def mergeAndVerify(Map cfg, Map digests, String version, List<String> annotations) {
    String mergeScript = libraryResource('archfleet/merge.sh')
    String checkScript = libraryResource('archfleet/check-tool.sh')
    String index = null
    stage(cfg.name ? "merge ${cfg.name}" : 'merge multi-arch index') {
        onAgent(cfg, cfg.mergeLabel, cfg.name ? "the merge of ${cfg.name}" : 'the merge') {
            // Everything the merge writes lives in the @tmp sibling of the workspace (mounted by
            // inside() too): the index digest and, in the image, the push login.
            String work = "${pwd(tmp: true)}/archfleet-merge${cfg.name ? "-${cfg.name}" : ''}".toString()
            String dockerConfig = cfg.archfleetImage && cfg.credentialsId ?
                "${work}/registry".toString() : null
            List<String> mergeEnv
            try {
                mergeEnv = Config.mergeEnv(cfg, digests, work, dockerConfig, annotations)
            } catch (LibraryError e) {
                error("multiArchBuild: ${e.message}")
            }
            try {
                withEnv(["AF_WORK=${work}".toString()]) {
                    sh(label: 'prepare merge work directory',
                        script: 'set +x; rm -rf "$AF_WORK" && mkdir -p "$AF_WORK" && chmod 700 "$AF_WORK"')
                }
                if (dockerConfig != null) {
                    writeDockerConfig(cfg, dockerConfig)
                }
                withArchfleet(cfg) {
                    // Again where the merge runs: another agent with the label may hold another tool.
                    checkTool(cfg, version, checkScript)
                    withEnv(mergeEnv) {
                        if (cfg.archfleetImage) {
                            sh(label: 'archfleet merge-manifest', script: mergeScript)
                        } else {
                            withRegistryCredentials(cfg, true) {
                                sh(label: 'archfleet merge-manifest', script: mergeScript)
                            }
                        }
                    }
                }
                index = digestFrom(readFile("${work}/index-digest"), 'merge-manifest')
            } finally {
                withEnv(["AF_WORK=${work}".toString()]) {
                    sh(label: 'remove merge work directory and registry login', script: 'set +x; rm -rf "$AF_WORK"')
                }
            }
        }
    }
    return index
}

/** On the agent, not in the container: the push login as a private docker config. */
def writeDockerConfig(Map cfg, String dockerConfig) {
    String configScript = libraryResource('archfleet/registry-config.sh')
    withEnv(["AF_DOCKER_CONFIG=${dockerConfig}", "AF_AUTH_KEY=${cfg.dockerAuthKey}"]) {
        withRegistryCredentials(cfg, true) {
            sh(label: 'registry login for the tool image', script: configScript)
        }
    }
}

/** withCredentials only when something is pushed: a build that pushes nothing needs no secret. */
def withRegistryCredentials(Map cfg, boolean pushing, Closure body) {
    if (!cfg.credentialsId || !pushing) {
        return body()
    }
    // The secret reaches the scripts as an environment variable only: no Groovy string ever
    // holds it, and the scripts hand it to login commands on stdin.
    withCredentials([usernamePassword(credentialsId: cfg.credentialsId,
            usernameVariable: 'REGISTRY_USER', passwordVariable: 'REGISTRY_PASSWORD')]) {
        body()
    }
}

def digestFrom(String text, String what) {
    try {
        return Digests.parse(text, what)
    } catch (LibraryError e) {
        error("multiArchBuild: ${e.message}")
    }
}
