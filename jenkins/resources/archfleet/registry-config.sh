set +x  # Jenkins runs a script without a shebang as `sh -xe`: no trace.
# archfleet multiArchBuild: the push credentials for a merge that runs in archfleetImage, as a
# private docker config ($AF_DOCKER_CONFIG/config.json, `auths`) that archfleet reads through
# DOCKER_CONFIG.
#
# Why a file and not REGISTRY_USER/REGISTRY_PASSWORD: docker.image(...).inside hands the step's
# environment to `docker exec` as --env NAME=VALUE arguments (docker-workflow-plugin
# WithContainerStep.Decorator), so a bound secret would stand on the merge agent's process list.
# This script runs on the agent itself (not in the container), under withCredentials; the file
# lives in the build's tmp dir (pwd(tmp: true), outside the workspace), which inside() mounts at
# the same path, and the step deletes it when the merge ends.
#   AF_DOCKER_CONFIG the directory to create   AF_AUTH_KEY the config.json key (registry host)
#   REGISTRY_USER / REGISTRY_PASSWORD from withCredentials
set -eu

umask 077
rm -rf "$AF_DOCKER_CONFIG"
mkdir -p "$AF_DOCKER_CONFIG"
# printf is a shell builtin: the secret is never an argument of a process.
auth=$(printf '%s:%s' "$REGISTRY_USER" "$REGISTRY_PASSWORD" | base64 | tr -d '\n')
printf '{"auths": {"%s": {"auth": "%s"}}}\n' "$AF_AUTH_KEY" "$auth" > "$AF_DOCKER_CONFIG/config.json"
echo "archfleet: registry login for $AF_AUTH_KEY written for the merge in the tool image"
