package ssh

import (
	"bytes"
	"strings"

	gossh "golang.org/x/crypto/ssh"
)

// The editing of authorized_keys is pure: it takes the file's bytes and returns the new bytes.
// A line is matched by its key (type and blob), never by its comment, and every line that is not
// removed is kept byte for byte, including its line ending and the absence of a final newline.

// replacesTag is the comment word that records which key a line of ours replaced. A later
// rotation from that same key (the rotation that added the line failed and was never promoted)
// removes such a line, so that an interrupted rotation cannot leave a stray authorized key.
const replacesTag = "replaces="

// splitLines splits content into lines that keep their terminators; joining them gives content.
func splitLines(content []byte) [][]byte {
	var lines [][]byte
	for len(content) > 0 {
		i := bytes.IndexByte(content, '\n')
		if i < 0 {
			lines = append(lines, content)
			break
		}
		lines = append(lines, content[:i+1])
		content = content[i+1:]
	}
	return lines
}

// parsedLine is one authorized_keys line that holds a key.
type parsedLine struct {
	key     gossh.PublicKey
	comment string
	options []string
}

// parseLine parses one line (with or without its terminator); ok is false for blank lines,
// comments and lines that do not parse.
func parseLine(line []byte) (parsedLine, bool) {
	line = bytes.TrimRight(line, "\r\n")
	trimmed := bytes.TrimSpace(line)
	if len(trimmed) == 0 || trimmed[0] == '#' {
		return parsedLine{}, false
	}
	key, comment, options, _, err := gossh.ParseAuthorizedKey(line)
	if err != nil {
		return parsedLine{}, false
	}
	return parsedLine{key: key, comment: comment, options: options}, true
}

func sameKey(a, b gossh.PublicKey) bool {
	return a.Type() == b.Type() && bytes.Equal(a.Marshal(), b.Marshal())
}

// hasKey reports whether any line authorizes key.
func hasKey(content []byte, key gossh.PublicKey) bool {
	for _, l := range splitLines(content) {
		if p, ok := parseLine(l); ok && sameKey(p.key, key) {
			return true
		}
	}
	return false
}

// optionsOf returns the options of the first line that authorizes key ("" when none), so that
// the next key inherits the restrictions (from="...", no-pty, ...) the operator put on the current one.
func optionsOf(content []byte, key gossh.PublicKey) string {
	for _, l := range splitLines(content) {
		if p, ok := parseLine(l); ok && sameKey(p.key, key) {
			return strings.Join(p.options, ",")
		}
	}
	return ""
}

// keyLine is the line we add for key: options (may be empty), the key, our comment, and the
// fingerprint of the key it replaces.
func keyLine(options string, key gossh.PublicKey, replaces gossh.PublicKey) string {
	line := publicKeyLine(key)
	if replaces != nil {
		line += " " + replacesTag + gossh.FingerprintSHA256(replaces)
	}
	if options != "" {
		line = options + " " + line
	}
	return line
}

// addLine appends line (no terminator) unless key is already authorized. A file without a final
// newline keeps that property: the newline goes before our line, not after it, so that removing
// our line later gives back the original bytes.
func addLine(content []byte, key gossh.PublicKey, line string) ([]byte, bool) {
	if hasKey(content, key) {
		return content, false
	}
	out := make([]byte, 0, len(content)+len(line)+2)
	out = append(out, content...)
	switch {
	case len(content) == 0:
		out = append(out, line...)
		out = append(out, '\n')
	case content[len(content)-1] == '\n':
		out = append(out, line...)
		out = append(out, '\n')
	default:
		out = append(out, '\n')
		out = append(out, line...)
	}
	return out, true
}

// removeLines drops every line for which drop is true. When the dropped last line had no
// terminator, the newline that now ends the file is dropped too (the inverse of addLine).
func removeLines(content []byte, drop func(parsedLine) bool) ([]byte, bool) {
	lines := splitLines(content)
	var kept [][]byte
	changed := false
	lastDroppedUnterminated := false
	for i, l := range lines {
		if p, ok := parseLine(l); ok && drop(p) {
			changed = true
			if i == len(lines)-1 && !bytes.HasSuffix(l, []byte("\n")) {
				lastDroppedUnterminated = true
			}
			continue
		}
		kept = append(kept, l)
	}
	if !changed {
		return content, false
	}
	out := bytes.Join(kept, nil)
	if lastDroppedUnterminated && len(kept) > 0 && bytes.HasSuffix(out, []byte("\n")) {
		out = out[:len(out)-1]
	}
	if out == nil {
		out = []byte{}
	}
	return out, true
}

// removeKey drops every line that authorizes key, whatever its options or comment.
func removeKey(content []byte, key gossh.PublicKey) ([]byte, bool) {
	return removeLines(content, func(p parsedLine) bool { return sameKey(p.key, key) })
}

// removeStray drops our lines that replaced `from` but are not `keep`: keys added by a rotation
// away from `from` that never completed (from is still the live key, so they were never promoted).
func removeStray(content []byte, from, keep gossh.PublicKey) ([]byte, bool) {
	tag := replacesTag + gossh.FingerprintSHA256(from)
	return removeLines(content, func(p parsedLine) bool {
		words := strings.Fields(p.comment)
		return len(words) == 2 && words[0] == KeyComment && words[1] == tag && !sameKey(p.key, keep) && !sameKey(p.key, from)
	})
}

// retire drops every line of old and our stray lines that replaced old (removeStray), keeping
// keep: what is left of old once keep is the live key.
func retire(content []byte, old, keep gossh.PublicKey) ([]byte, bool) {
	out, removed := removeKey(content, old)
	out, stray := removeStray(out, old, keep)
	return out, removed || stray
}
