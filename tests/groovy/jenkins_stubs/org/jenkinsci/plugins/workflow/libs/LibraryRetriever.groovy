package org.jenkinsci.plugins.workflow.libs

/** FAKE of pipeline-groovy-lib's LibraryRetriever (for the fake script console). */
abstract class LibraryRetriever {
}
