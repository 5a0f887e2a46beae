"""Help for the merge/verify flags: one text for the Invoke tasks and the argparse entry.

Its own module so the task collection can load it without the registry client.
"""

MERGE_HELP = {
    "target": "Tag to write the index to (REGISTRY/REPO:TAG); repeat for more tags.",
    "source": "[PLATFORM=]REF of a per-arch image: tag or digest, same registry; "
    "`PLATFORM=@sha256:…` means a digest in the target's repository. Repeat per arch.",
    "insecure": "Plain HTTP (a loopback or lab registry); TLS is verified otherwise.",
    "dry-run": "Read and check everything, print what would be written, write nothing.",
    "json": "Print the whole result as JSON on stdout.",
    "attestations": "keep|strip buildx provenance/SBOM manifests (default keep).",
    "child-tags": "Also tag each child <target-tag>-<arch> so clean-up policies keep it "
    "(default on; --no-child-tags to skip).",
}
VERIFY_HELP = {
    "target": "The tag to check (REGISTRY/REPO:TAG).",
    "platforms": "Comma-separated platforms that must each be present exactly once, "
    "e.g. linux/amd64,linux/arm64.",
    "insecure": "Plain HTTP (a loopback or lab registry); TLS is verified otherwise.",
    "check-binaries": "Also read each image's layers and check its entrypoint's ELF machine.",
    "json": "Print the whole report as JSON on stdout.",
}
