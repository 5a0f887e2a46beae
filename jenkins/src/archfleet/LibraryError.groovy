package archfleet

/**
 * A problem with the step's arguments or inputs that the user can fix; the message says how.
 *
 * Its own class extending java.lang.Exception because the Groovy sandbox (an untrusted, folder-
 * level library) approves only `new java.lang.Exception(String)` among the JDK's exception
 * constructors (script-security generic-whitelist), not IllegalArgumentException's, while
 * classes of the library itself are always allowed. vars/ turns it into error(message).
 */
class LibraryError extends Exception {
    private static final long serialVersionUID = 1L

    LibraryError(String message) {
        super(message)
    }
}
