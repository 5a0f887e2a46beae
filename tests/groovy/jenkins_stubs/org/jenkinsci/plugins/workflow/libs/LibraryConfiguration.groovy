package org.jenkinsci.plugins.workflow.libs

/** FAKE of pipeline-groovy-lib's LibraryConfiguration: same constructor, setters, defaults. */
class LibraryConfiguration {
    private final String name
    private final LibraryRetriever retriever
    private String defaultVersion
    private boolean implicit
    private boolean allowVersionOverride = true

    LibraryConfiguration(String name, LibraryRetriever retriever) {
        this.name = name?.trim() ?: null
        this.retriever = retriever
    }

    String getName() { name }

    LibraryRetriever getRetriever() { retriever }

    String getDefaultVersion() { defaultVersion }

    void setDefaultVersion(String version) { defaultVersion = version?.trim() ?: null }

    boolean isImplicit() { implicit }

    void setImplicit(boolean value) { implicit = value }

    boolean isAllowVersionOverride() { allowVersionOverride }

    void setAllowVersionOverride(boolean value) { allowVersionOverride = value }
}
