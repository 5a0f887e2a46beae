package org.jenkinsci.plugins.workflow.libs

/** FAKE of pipeline-groovy-lib's SCMSourceRetriever: the same constructor and setters. */
class SCMSourceRetriever extends LibraryRetriever {
    private final Object scm
    private String libraryPath

    SCMSourceRetriever(Object scm) {
        this.scm = scm
    }

    Object getScm() {
        return scm
    }

    String getLibraryPath() {
        return libraryPath
    }

    // As SCMBasedRetriever.setLibraryPath: trimmed, empty -> null, always ending in '/'.
    void setLibraryPath(String path) {
        String fixed = path?.trim() ?: null
        if (fixed != null && !fixed.endsWith('/')) {
            fixed += '/'
        }
        libraryPath = fixed
    }
}
