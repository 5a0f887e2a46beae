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
 * version.txt), else the build fails before any build agent is taken. Then one parallel branch
 * per platform, each inside node(<that arch's label>): checkout, native guard (`uname -m` must
 * be the platform's), build, push BY DIGEST (no tag). The digests come back here; only when
 * every branch succeeded does ONE merge write the index under all tags, then verify it.
 * Returns [pushed:, digests: [platform: digest], index:, tags:].
 * Arguments: vars/multiArchBuild.txt. Pure logic lives in src/archfleet (no CPS needed there),
 * shell in resources/archfleet; scripts get their inputs as environment variables, and
 * registry secrets only ever through withCredentials (for a merge in archfleetImage, as a
 * private docker config file written under it: see mergeAndVerify).
 */
def call(Map args = [:]) {
    String arches = libraryResource('archfleet/arches.json')
    Map cfg = configure(args, arches)
    String version = toolVersion()
    if (cfg.push) {
        // Before any build agent is taken: a missing or wrong archfleet would otherwise fail
        // the merge only after every platform has built and pushed.
        preflight(cfg, version)
    }
    String buildScript = libraryResource('archfleet/build.sh')
    Map digests = [:]
    Map branches = [failFast: cfg.failFast]
    for (int i = 0; i < cfg.arches.size(); i++) {
        Map arch = cfg.arches[i]
        branches[arch.platform] = {
            buildPlatform(cfg, arch, arches, buildScript, digests)
        }
    }
    parallel(branches)
    if (!cfg.push) {
        echo("multiArchBuild: built ${cfg.platformList}; push is off (pushes on ${cfg.mainBranch} " +
            'and tag builds, or with push: true), so nothing was pushed or merged')
        return [pushed: false, digests: [:], index: null, tags: []]
    }
    String index = mergeAndVerify(cfg, digests, version)
    return [pushed: true, digests: digests, index: index, tags: cfg.targets]
}

def configure(Map args, String arches) {
    try {
        return Config.parse(args, arches,
            [BRANCH_NAME: env.BRANCH_NAME, TAG_NAME: env.TAG_NAME, BUILD_TAG: env.BUILD_TAG])
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

/** On the merge agent (in archfleetImage when given): archfleet must be there, of `version`. */
def preflight(Map cfg, String version) {
    String checkScript = libraryResource('archfleet/check-tool.sh')
    stage('archfleet preflight') {
        node(cfg.mergeLabel) {
            withArchfleet(cfg) {
                checkTool(cfg, version, checkScript)
            }
        }
    }
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

def buildPlatform(Map cfg, Map arch, String arches, String buildScript, Map digests) {
    node(arch.label) {
        stage("build ${arch.platform}") {
            if (cfg.checkout) {
                checkout(cfg.scm ?: scm)
            }
            nativeGuard(cfg, arch, arches)
            writeFile(file: "${arch.out}/build-args", text: cfg.buildArgsText)
            withEnv(Config.buildEnv(cfg, arch)) {
                withRegistryCredentials(cfg) {
                    sh(buildScript)
                }
            }
            if (cfg.push) {
                String file = "${arch.out}/${cfg.builder == 'buildx' ? 'metadata.json' : 'digest'}"
                digests[arch.platform] = digestFrom(readFile(file), "${arch.platform} build (${file})")
            }
        }
    }
}

def nativeGuard(Map cfg, Map arch, String arches) {
    String machine = sh(script: 'uname -m', returnStdout: true).trim()
    String problem = Platforms.guard(Platforms.parseTable(arches), arch, machine, arch.label,
        env.NODE_NAME)
    if (problem == null) {
        return
    }
    if (!cfg.allowEmulation) {
        error("multiArchBuild: ${problem}. Label agents by their real CPU, or pass " +
            'allowEmulation: true to accept an emulated (QEMU) build')
    }
    echo("multiArchBuild: WARNING: ${problem}; building under emulation (allowEmulation: true)")
}

def mergeAndVerify(Map cfg, Map digests, String version) {
    String mergeScript = libraryResource('archfleet/merge.sh')
    String checkScript = libraryResource('archfleet/check-tool.sh')
    String index = null
    stage('merge multi-arch index') {
        node(cfg.mergeLabel) {
            // In the image the push login is a file, not environment variables: inside() would
            // put those on `docker exec` command lines (see resources/archfleet/registry-config.sh).
            String dockerConfig = cfg.archfleetImage && cfg.credentialsId ?
                "${pwd(tmp: true)}/archfleet-registry".toString() : null
            List<String> mergeEnv
            try {
                mergeEnv = Config.mergeEnv(cfg, digests, dockerConfig)
            } catch (LibraryError e) {
                error("multiArchBuild: ${e.message}")
            }
            try {
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
                            withRegistryCredentials(cfg) {
                                sh(label: 'archfleet merge-manifest', script: mergeScript)
                            }
                        }
                    }
                }
            } finally {
                if (dockerConfig != null) {
                    withEnv(["AF_DOCKER_CONFIG=${dockerConfig}"]) {
                        sh(label: 'remove the registry login', script: 'rm -rf "$AF_DOCKER_CONFIG"')
                    }
                }
            }
            index = digestFrom(readFile("${cfg.mergeOut}/index-digest"), 'merge-manifest')
        }
    }
    return index
}

/** On the agent, not in the container: the push login as a private docker config. */
def writeDockerConfig(Map cfg, String dockerConfig) {
    String configScript = libraryResource('archfleet/registry-config.sh')
    withEnv(["AF_DOCKER_CONFIG=${dockerConfig}", "AF_AUTH_KEY=${cfg.dockerAuthKey}"]) {
        withRegistryCredentials(cfg) {
            sh(label: 'registry login for the tool image', script: configScript)
        }
    }
}

def withRegistryCredentials(Map cfg, Closure body) {
    if (!cfg.credentialsId) {
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
