package archfleet

import com.cloudbees.groovy.cps.NonCPS
import groovy.json.JsonSlurper

/** Digests as builders write them: a digest file (buildah --digestfile) or buildx metadata. */
class Digests implements Serializable {
    private static final long serialVersionUID = 1L

    private static final String DIGEST_PATTERN = /sha256:[0-9a-f]{64}/
    private static final String BUILDX_KEY = 'containerimage.digest'

    /**
     * The one sha256 digest in `text`: a bare digest (surrounding whitespace allowed) or a
     * buildx --metadata-file JSON document. `what` names the text in the error.
     */
    @NonCPS
    static String parse(String text, String what) {
        String trimmed = (text ?: '').trim()
        String digest = trimmed
        if (trimmed.startsWith('{')) {
            Object metadata
            try {
                metadata = new JsonSlurper().parseText(trimmed)
            } catch (Exception e) {
                throw new LibraryError("${what}: buildx metadata is not JSON (${e.message})")
            }
            Object found = metadata instanceof Map ? ((Map) metadata).get(BUILDX_KEY) : null
            if (found == null) {
                throw new LibraryError("${what}: buildx metadata has no '${BUILDX_KEY}'")
            }
            digest = found.toString().trim()
        }
        if (!(digest ==~ DIGEST_PATTERN)) {
            String shown = digest.length() > 80 ? digest.substring(0, 80) + '...' : digest
            throw new LibraryError(
                "${what}: expected a digest sha256:<64 hex digits>, got '${shown}'")
        }
        return digest
    }

    /** A merge-manifest --source in the target's repository: `linux/arm64=@sha256:...`. */
    @NonCPS
    static String source(String platform, String digest) {
        return "${platform}=@${parse(digest, platform)}"
    }
}
