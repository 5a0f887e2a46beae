# --- engines: buildah and docker inside a container job -------------------------------------

# In a container (the Docker or Kubernetes executor), buildah has no overlay mount and no
# user namespaces of its own: vfs storage and chroot isolation, as GitLab's buildah guide
# (doc/ci/docker/buildah_rootless_tutorial.md) and containers/image_build set them. Variables
# of the project or runner win; a shell runner keeps its own settings.
archfleet_in_container() {
  [ -f /.dockerenv ] || [ -f /run/.containerenv ] || [ -n "${KUBERNETES_SERVICE_HOST:-}" ]
}

archfleet_buildah_env() {
  archfleet_in_container || return 0
  : "${STORAGE_DRIVER:=vfs}" "${BUILDAH_ISOLATION:=chroot}"
  export STORAGE_DRIVER BUILDAH_ISOLATION
  archfleet_note "in a container: buildah with STORAGE_DRIVER=$STORAGE_DRIVER BUILDAH_ISOLATION=$BUILDAH_ISOLATION"
}

# buildx in a container reaches the docker_service (docker:dind, alias docker) over TLS, with
# the client certificates the service wrote under DOCKER_TLS_CERTDIR (GitLab's
# doc/ci/docker/using_docker_build.md); a DOCKER_HOST set by the runner or project wins.
archfleet_docker_env() {
  [ -z "${DOCKER_HOST:-}" ] && [ -n "${DOCKER_TLS_CERTDIR:-}" ] && archfleet_in_container || return 0
  DOCKER_HOST=tcp://docker:2376
  DOCKER_TLS_VERIFY=1
  DOCKER_CERT_PATH="$DOCKER_TLS_CERTDIR/client"
  export DOCKER_HOST DOCKER_TLS_VERIFY DOCKER_CERT_PATH
  archfleet_note "in a container: docker at $DOCKER_HOST (TLS, certificates in $DOCKER_CERT_PATH)"
}
