package jenkins.plugins.git.traits

/** FAKE of the git plugin's BranchDiscoveryTrait (discovery behaviour of a GitSCMSource). */
class BranchDiscoveryTrait {
}
