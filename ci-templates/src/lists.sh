# --- lists: array inputs and the platforms input ---------------------------------------------

# Items of a list, one per line. A component input array arrives inside a string, as
# `inputs.platforms=["linux/amd64", "linux/arm64"]`. GitLab writes it there in one of two forms:
# - hash-mode interpolation (the default; gitlabhq lib/gitlab/ci/config/interpolation/
#   template.rb `get_block_value!`): `node.gsub(match[:block], block.value.to_s)`, and an Array's
#   to_s is Ruby's inspect: `["stable", 2, 1.0]` (numbers unquoted, `"` as `\"`, `#{` as `\#{`,
#   a backslash as `\\`, a newline as `\n`). The replacement string of gsub then reads `\\` as
#   one backslash, so `C:\new` arrives as `"C:\new"`: a backslash cannot be told from an escape.
# - text-mode interpolation (text_template.rb) and gitlab-ci-local: JSON, `["stable",2,1.0]`.
# Items are quoted strings (`\"` and `\#` unescaped) or numbers/true/false, kept as written.
# Any other backslash escape, a nil, a nested array or hash, or a malformed list is an error
# naming the input: never an item dropped or guessed. MODE words also refuses blanks in an item.
# A plain variable of the include variant is `linux/amd64 linux/arm64` (MODE words: split on
# blanks and commas) or one item per line (MODE lines, for build args that contain blanks).
archfleet_list() {
  case "$2" in
    *'['*)
      printf '%s\n' "$2" | awk -v mode="$1" '
        function fail(msg) {
          printf "archfleet: error: %s\n", label ": " msg > "/dev/stderr"
          exit 1
        }
        { text = text (NR > 1 ? "\n" : "") $0 }
        END {
          start = index(text, "[")
          label = substr(text, 1, start - 1)
          sub(/=[ \t]*$/, "", label)
          if (label == "") label = "list"
          n = length(text); i = start + 1; count = 0; state = "first"
          while (1) {
            while (i <= n && index(" \t\r\n", substr(text, i, 1)) > 0) i++
            if (i > n) fail("the array has no closing ] (" text ")")
            c = substr(text, i, 1)
            if (state == "sep") {
              if (c == ",") { i++; state = "item"; continue }
              if (c == "]") { i++; break }
              fail("expected , or ] after item " count ", found " c)
            }
            if (c == "]" && state == "first") { i++; break }
            count++
            if (c == "\"") {
              item = ""; i++; closed = 0
              while (i <= n) {
                c = substr(text, i, 1)
                if (c == "\\") {
                  e = substr(text, i + 1, 1)
                  if (e == "\"" || e == "#") { item = item e; i += 2; continue }
                  fail("item " count " holds a backslash escape (\\" e "): GitLab passes an array item with a backslash or a control character mangled (its interpolation reads backslashes as escapes), so it cannot be used. Pass such a value in a CI/CD variable instead.")
                }
                if (c == "\"") { closed = 1; i++; break }
                if (c == "\n" || c == "\t" || c == "\r") fail("item " count " holds a control character")
                item = item c; i++
              }
              if (!closed) fail("item " count " has no closing quote")
            } else if (c == "[" || c == "{") {
              fail("item " count " is a nested array or hash; expected strings or numbers")
            } else {
              j = i
              while (j <= n && index(",] \t\r\n", substr(text, j, 1)) == 0) j++
              item = substr(text, i, j - i); i = j
              if (item == "nil" || item == "null") fail("item " count " is empty (" item ")")
              if (item !~ /^-?[0-9]+([.][0-9]+)?([eE][-+]?[0-9]+)?$/ && item != "true" && item != "false")
                fail("item " count " (" item ") is neither a quoted string nor a number; expected the form [\"a\", 2, 1.0]")
            }
            if (mode == "words" && item ~ /[ \t]/) fail("item " count " (" item ") contains a blank")
            items[count] = item
            state = "sep"
          }
          rest = substr(text, i)
          sub(/^[ \t\r\n]+/, "", rest)
          if (rest != "") fail("text after the closing ]: " rest)
          for (k = 1; k <= count; k++) print items[k]
        }'
      ;;
    *)
      if [ "$1" = lines ]; then
        printf '%s\n' "$2" | sed -e 's/^[[:space:]]*//' -e 's/[[:space:]]*$//' -e '/^$/d'
      else
        printf '%s\n' "$2" | tr ', \t' '\n\n\n' | sed -e '/^$/d'
      fi
      ;;
  esac
}

# The requested platforms, canonical, one per line; unknown or repeated ones are refused.
archfleet_requested_platforms() {
  archfleet_items=$(archfleet_list words "${ARCHFLEET_PLATFORMS:-}") || exit 1
  [ -n "$archfleet_items" ] || archfleet_fail "no platforms requested (input platforms / ARCHFLEET_PLATFORMS is empty)"
  archfleet_seen=" "
  # set -f: an item like `v-*` must stay a word, never become file names.
  set -f
  for archfleet_item in $archfleet_items; do
    archfleet_canonical=$(archfleet_platform_canonical "$archfleet_item") \
      || archfleet_fail "unknown platform '$archfleet_item' in platforms; archfleet knows: $ARCHFLEET_KNOWN_PLATFORMS"
    case "$archfleet_seen" in
      *" $archfleet_canonical "*) archfleet_fail "platform $archfleet_canonical is listed twice in platforms" ;;
    esac
    archfleet_seen="$archfleet_seen$archfleet_canonical "
    echo "$archfleet_canonical"
  done
  set +f
}

# The build_args input, one NAME=value (or NAME) a line.
archfleet_build_args() {
  archfleet_list lines "${ARCHFLEET_BUILD_ARGS:-}"
}
