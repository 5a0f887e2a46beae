"""Help for the merge/verify flags: one text for the Invoke tasks and the argparse entry.

Its own module so the task collection can load it without the registry client.
"""

MERGE_HELP = {
    "target": "Tag to write the index to (REGISTRY/REPO:TAG); repeat for more tags.",
    "source": "[PLATFORM=]REF of a per-arch image: tag or digest; "
    "`PLATFORM=@sha256:…` means a digest in the target's repository. Repeat per arch. "
    "A source in another registry has its blobs copied (streamed, digest-checked); that "
    "host's credentials come from docker's config.json, never REGISTRY_USER.",
    "insecure": "Plain HTTP (a loopback or lab registry); TLS is verified otherwise.",
    "dry-run": "Read and check everything, print what would be written, write nothing.",
    "json": "Print the whole result as JSON on stdout.",
    "attestations": "keep|strip buildx provenance/SBOM manifests (default keep).",
    "child-tags": "Also tag each child <target-tag>-<arch> so clean-up policies keep it "
    "(default on; --no-child-tags to skip).",
    "annotation": "KEY=VALUE on the index, repeatable (e.g. org.opencontainers.image.source, "
    ".revision, .created as RFC 3339); keys checked against the OCI image-spec's annotation "
    "rules. Makes the index an OCI index.",
    "append": "Keep the entries of the index the (first) target holds, re-verified, and add "
    "the sources' platforms; its annotations are kept unless --annotation overrides them.",
    "replace": "With --append: a source whose platform the index already has (with another "
    "image) replaces that entry; without it that is an error.",
}
VERIFY_HELP = {
    "target": "The tag to check (REGISTRY/REPO:TAG).",
    "platforms": "Comma-separated platforms that must each be present exactly once, "
    "e.g. linux/amd64,linux/arm64.",
    "insecure": "Plain HTTP (a loopback or lab registry); TLS is verified otherwise.",
    "check-binaries": "Also read each image's layers and check its entrypoint's ELF machine.",
    "json": "Print the whole report as JSON on stdout.",
}
