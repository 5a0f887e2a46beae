import archfleet.Config
import archfleet.Digests
import archfleet.Platforms

/*
 * multiArchBuild: a multi-arch image, each platform built natively on its own agent.
 *
 * One parallel branch per platform, each inside node(<that arch's label>): checkout, native
 * guard (`uname -m` must be the platform's), build, push BY DIGEST (no tag). The digests come
 * back here; only when every branch succeeded does ONE merge write the index under all tags,
 * then verify it. Returns [pushed:, digests: [platform: digest], index:, tags:].
 * Arguments: vars/multiArchBuild.txt. Pure logic lives in src/archfleet (no CPS needed there),
 * shell in resources/archfleet; scripts get their inputs as environment variables, and
 * registry secrets only ever through withCredentials.
 */
def call(Map args = [:]) {
    String arches = libraryResource('archfleet/arches.json')
    Map cfg = configure(args, arches)
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
    String index = mergeAndVerify(cfg, digests)
    return [pushed: true, digests: digests, index: index, tags: cfg.targets]
}

def configure(Map args, String arches) {
    try {
        return Config.parse(args, arches,
            [BRANCH_NAME: env.BRANCH_NAME, TAG_NAME: env.TAG_NAME, BUILD_TAG: env.BUILD_TAG])
    } catch (IllegalArgumentException e) {
        error("multiArchBuild: ${e.message}")
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

def mergeAndVerify(Map cfg, Map digests) {
    String mergeScript = libraryResource('archfleet/merge.sh')
    String index = null
    stage('merge multi-arch index') {
        node(cfg.mergeLabel) {
            List<String> mergeEnv
            try {
                mergeEnv = Config.mergeEnv(cfg, digests)
            } catch (IllegalArgumentException e) {
                error("multiArchBuild: ${e.message}")
            }
            withEnv(mergeEnv) {
                withRegistryCredentials(cfg) {
                    sh(mergeScript)
                }
            }
            index = digestFrom(readFile("${cfg.mergeOut}/index-digest"), 'merge-manifest')
        }
    }
    return index
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
    } catch (IllegalArgumentException e) {
        error("multiArchBuild: ${e.message}")
    }
}
