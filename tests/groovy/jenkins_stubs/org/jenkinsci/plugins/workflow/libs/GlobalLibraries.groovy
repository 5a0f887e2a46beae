package org.jenkinsci.plugins.workflow.libs

import groovy.json.JsonOutput
import groovy.json.JsonSlurper
import jenkins.plugins.git.GitSCMSource

/**
 * FAKE of pipeline-groovy-lib's GlobalLibraries: get(), getLibraries(), setLibraries() (which
 * saves, as the real one does). The configuration lives in $FAKE_JENKINS_HOME/libraries.json.
 */
class GlobalLibraries {
    private static GlobalLibraries instance
    private List<LibraryConfiguration> libraries = []

    static synchronized GlobalLibraries get() {
        if (instance == null) {
            instance = new GlobalLibraries()
            instance.load()
        }
        return instance
    }

    List<LibraryConfiguration> getLibraries() {
        return libraries
    }

    void setLibraries(List<LibraryConfiguration> value) {
        libraries = value
        save()
    }

    private static File file() {
        return new File(System.getenv('FAKE_JENKINS_HOME'), 'libraries.json')
    }

    private void load() {
        if (!file().isFile()) {
            return
        }
        libraries = ((List) new JsonSlurper().parse(file())).collect { Map data ->
            GitSCMSource source = new GitSCMSource((String) data.remote)
            source.credentialsId = (String) data.credentialsId
            source.traits = ((List) data.traits).collect { String name ->
                Class.forName("jenkins.plugins.git.traits.${name}").newInstance()
            }
            SCMSourceRetriever retriever = new SCMSourceRetriever(source)
            retriever.libraryPath = (String) data.libraryPath
            LibraryConfiguration library = new LibraryConfiguration((String) data.name, retriever)
            library.defaultVersion = (String) data.defaultVersion
            library.implicit = (boolean) data.implicit
            library.allowVersionOverride = (boolean) data.allowVersionOverride
            library
        }
    }

    private void save() {
        List data = libraries.collect { LibraryConfiguration library ->
            SCMSourceRetriever retriever = (SCMSourceRetriever) library.retriever
            GitSCMSource source = (GitSCMSource) retriever.scm
            [name: library.name, remote: source.remote, credentialsId: source.credentialsId,
             traits: source.traits.collect { it.getClass().simpleName },
             libraryPath: retriever.libraryPath, defaultVersion: library.defaultVersion,
             implicit: library.implicit, allowVersionOverride: library.allowVersionOverride]
        }
        file().text = JsonOutput.prettyPrint(JsonOutput.toJson(data))
    }
}
