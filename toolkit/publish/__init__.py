"""Publishing: the CI templates to a GitLab project, the shared library to Jenkins."""
