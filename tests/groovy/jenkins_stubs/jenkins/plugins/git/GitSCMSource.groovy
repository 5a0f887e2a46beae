package jenkins.plugins.git

/** FAKE of the git plugin's GitSCMSource: GitSCMSource(remote), credentialsId, traits. */
class GitSCMSource {
    private final String remote
    private String credentialsId
    private List traits = []

    GitSCMSource(String remote) {
        this.remote = remote
    }

    String getRemote() { remote }

    String getCredentialsId() { credentialsId }

    void setCredentialsId(String value) { credentialsId = value }

    List getTraits() { traits }

    void setTraits(List value) { traits = value == null ? [] : new ArrayList(value) }
}
