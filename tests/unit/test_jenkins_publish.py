"""publish-jenkins-library, the pure part: specs, planning, config.xml, console scripts."""

from __future__ import annotations

import json

import pytest

from toolkit.publish.jenkins_library import (
    MANAGED_MARK,
    RESULT_PREFIX,
    JobSpec,
    LibrarySpec,
    ObservedJob,
    PublishError,
    apply_library_script,
    check_jenkins_url,
    groovy_string,
    job_fields,
    parse_script_output,
    plan_job,
    plan_library,
    query_library_script,
)

REMOTE = "https://git.example.com/platform/archfleet.git"

# config.xml as Jenkins writes it back after a save: XML 1.1, plugin versions on elements.
SAVED_BY_JENKINS = f"""<?xml version='1.1' encoding='UTF-8'?>
<flow-definition plugin="workflow-job@1400.v7fd111b_ec82f">
  <actions/>
  <description>Example. {MANAGED_MARK}; changes here are overwritten.</description>
  <keepDependencies>false</keepDependencies>
  <properties/>
  <definition class="org.jenkinsci.plugins.workflow.cps.CpsScmFlowDefinition"
      plugin="workflow-cps@3894.vd0f0248b_a_fc4">
    <scm class="hudson.plugins.git.GitSCM" plugin="git@5.2.2">
      <configVersion>2</configVersion>
      <userRemoteConfigs>
        <hudson.plugins.git.UserRemoteConfig>
          <url>{REMOTE}</url>
          <credentialsId>git-read</credentialsId>
        </hudson.plugins.git.UserRemoteConfig>
      </userRemoteConfigs>
      <branches>
        <hudson.plugins.git.BranchSpec><name>*/main</name></hudson.plugins.git.BranchSpec>
      </branches>
      <doGenerateSubmoduleConfigurations>false</doGenerateSubmoduleConfigurations>
      <submoduleCfg class="empty-list"/>
      <extensions/>
    </scm>
    <scriptPath>jenkins/Jenkinsfile.example</scriptPath>
    <lightweight>true</lightweight>
  </definition>
  <triggers/>
  <disabled>false</disabled>
</flow-definition>
"""


def test_library_fields_normalise_like_jenkins() -> None:
    spec = LibrarySpec(name="archfleet", remote=REMOTE, library_path=" jenkins ")
    fields = spec.fields()
    assert fields["libraryPath"] == "jenkins/" and fields["credentialsId"] is None
    assert LibrarySpec(name="a", remote=REMOTE, library_path="").fields()["libraryPath"] is None


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"name": "my lib"}, "library name 'my lib'"),
        ({"remote": ""}, "--library-repo is required"),
        ({"remote": "https://bot:hunter2@git.example.com/a.git"}, "contains credentials"),
        # A token as the user name is still a secret in the URL.
        ({"remote": "https://hunter2@git.example.com/a.git"}, "contains credentials"),
        ({"remote": "ssh://git:hunter2@git.example.com/a.git"}, "contains credentials"),
        ({"library_path": "../etc"}, "without '..'"),
        ({"default_version": "main branch"}, "is not a branch or tag"),
    ],
)
def test_library_spec_refusals(kwargs: dict[str, str], fragment: str) -> None:
    args = {"name": "archfleet", "remote": REMOTE, **kwargs}
    with pytest.raises(PublishError, match=fragment.replace("(", r"\(")) as caught:
        LibrarySpec(**args)  # type: ignore[arg-type]
    assert "hunter2" not in str(caught.value)


def test_ssh_user_names_are_fine_and_version_override_is_off_by_default() -> None:
    spec = LibrarySpec(name="archfleet", remote="ssh://git@git.example.com/platform/a.git")
    assert spec.fields()["allowVersionOverride"] is False
    on = LibrarySpec(name="archfleet", remote=REMOTE, allow_version_override=True)
    assert on.fields()["allowVersionOverride"] is True


def test_plan_library() -> None:
    spec = LibrarySpec(name="archfleet", remote=REMOTE)
    assert plan_library(spec, None).action == "create"
    assert plan_library(spec, spec.fields()).action == "unchanged"
    older = {**spec.fields(), "defaultVersion": "v1", "libraryPath": None}
    change = plan_library(spec, older)
    assert change.action == "update"
    assert change.differences == (
        "libraryPath: None -> 'jenkins/'",
        "defaultVersion: 'v1' -> 'main'",
    )


def test_job_config_round_trips_and_reads_what_jenkins_saved() -> None:
    spec = JobSpec(name="example", remote=REMOTE, credentials_id="git-read")
    assert job_fields(spec.config_xml()) == spec.fields()
    saved = job_fields(SAVED_BY_JENKINS)
    assert {k: v for k, v in saved.items() if k != "description"} == {
        k: v for k, v in spec.fields().items() if k != "description"
    }


def test_plan_job() -> None:
    spec = JobSpec(name="example", remote=REMOTE)
    assert plan_job(spec, ObservedJob(exists=False)).action == "create"
    same = ObservedJob(exists=True, fields=job_fields(spec.config_xml()))
    assert plan_job(spec, same).action == "unchanged"
    moved = JobSpec(name="example", remote=REMOTE, branch="release", script_path="ci/Jenkinsfile")
    change = plan_job(moved, same)
    assert change.action == "update"
    assert change.differences == (
        "branches: ['*/main'] -> ['*/release']",
        "scriptPath: 'jenkins/Jenkinsfile.example' -> 'ci/Jenkinsfile'",
    )


def test_a_job_archfleet_did_not_create_is_left_alone() -> None:
    spec = JobSpec(name="build-app", remote=REMOTE)
    theirs = ObservedJob(exists=True, fields={**spec.fields(), "description": "the team's job"})
    with pytest.raises(PublishError, match="was not created by archfleet"):
        plan_job(spec, theirs)


@pytest.mark.parametrize(
    ("value", "literal"),
    [
        ("plain", "'plain'"),
        ("it's", "'it\\'s'"),
        ("back\\slash", "'back\\\\slash'"),
        ("${not.interpolated}", "'${not.interpolated}'"),
        ("two\nlines", "'two\\nlines'"),
    ],
)
def test_groovy_string(value: str, literal: str) -> None:
    assert groovy_string(value) == literal


def test_console_scripts_embed_values_as_literals() -> None:
    spec = LibrarySpec(name="archfleet", remote="https://git.example.com/it's.git")
    script = apply_library_script(spec)
    assert "globals.libraries = libraries" in script
    embedded = json.dumps(spec.fields(), sort_keys=True)
    assert groovy_string(embedded) in script
    query = query_library_script("archfleet")
    assert "'archfleet'" in query and "globals.libraries =" not in query


def test_parse_script_output() -> None:
    answer = parse_script_output(f"noise\n{RESULT_PREFIX}{json.dumps({'library': None})}\n", "x")
    assert answer == {"library": None}
    with pytest.raises(PublishError, match="lacks a plugin"):
        parse_script_output("startup failed: unable to resolve class GlobalLibraries", "read")
    with pytest.raises(PublishError, match="did not answer as expected"):
        parse_script_output("java.lang.NullPointerException", "read")


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("ci.example.com", "not an http(s) URL"),
        ("https://admin:tok@ci.example.com", "contains credentials"),
    ],
)
def test_jenkins_url_refusals(url: str, fragment: str) -> None:
    with pytest.raises(PublishError, match=fragment.replace("(", r"\(").replace(")", r"\)")) as e:
        check_jenkins_url(url)
    assert "tok" not in str(e.value).replace("token", "")
