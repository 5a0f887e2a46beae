package jenkins.plugins.git.traits

/** FAKE of the git plugin's TagDiscoveryTrait (discovery behaviour of a GitSCMSource). */
class TagDiscoveryTrait {
}
