// Runs pipeline scenarios under PipelineHarness; one JVM for many scenarios keeps tests fast.
//
//   groovy -cp tests/groovy/stubs:tests/groovy:jenkins/src tests/groovy/run.groovy A.json [B.json ...]
//
// A scenario (JSON): workdir, library (the jenkins/ dir), agents [{name, labels, env}],
// credentials {id: {username, password} | {secret}}, env, params, source (checked out by
// `checkout`), and either step {name, args} (call a library step) or jenkinsfile (a path).
// The report (JSON: result, returned, error, calls, stepResults, log) goes to scenario.report.
import groovy.json.JsonSlurper

if (!args) {
    System.err.println('usage: run.groovy SCENARIO.json...')
    System.exit(2)
}
for (String path : args) {
    Map scenario = (Map) new JsonSlurper().parse(new File(path))
    PipelineHarness harness = new PipelineHarness(scenario)
    Map report = scenario.jenkinsfile ?
        harness.runJenkinsfile(new File(scenario.jenkinsfile.toString())) :
        harness.runStep(scenario.step.name.toString(), (Map) scenario.step.args)
    new File(scenario.report.toString()).setText(PipelineHarness.toJson(report), 'UTF-8')
    println "${scenario.name ?: path}: ${report.result}"
}
