package kube

import (
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"strings"
)

const (
	// maxLabel is the longest DNS-1123 label (namespace name, label value).
	maxLabel = 63
	// hashLen is the number of hex digits of sha256 appended to a name that
	// was truncated or sanitized lossily: 32 bits, so that even thousands of
	// long names sharing a prefix are unlikely to collide (24 bits would
	// collide with even odds at ~5,000).
	hashLen = 8
	// fallbackRepo replaces a repository name that sanitizes to nothing.
	fallbackRepo = "repo"
)

// ReleaseName is the Helm release name of every preview: each lives in a
// namespace of its own, so one name serves all.
const ReleaseName = "preview"

// NamespaceName is the namespace of a pull request's preview:
// pr-<repository name>-<number>, e.g. acme/web #12 → pr-web-12.
//
// Only the repository's name (after the last "/") is used, lowercased and
// reduced to [a-z0-9-] with runs of hyphens collapsed and trimmed; an empty
// result becomes "repo" (plus the hash below). The result is a DNS-1123 label of at most 63
// characters that always ends in -<number>: when the name must be shortened,
// the repository part is truncated, never the number. Whenever sanitizing
// lost information (characters other than case were replaced or dropped) or
// the name was truncated, eight hex digits of sha256 of the lowercased full
// "owner/name" are inserted before the number, so such names do not collide.
//
// Two repositories with the same name under different owners map to the
// same namespace; Namespaces.Ensure detects that through the repository
// annotation and refuses (model.ErrNotOwned).
//
// number is a pull request number (positive); a negative number is written
// without its sign.
func NamespaceName(repo string, number int) string {
	name := repo
	if i := strings.LastIndexByte(name, '/'); i >= 0 {
		name = name[i+1:]
	}
	lower := strings.ToLower(name)
	part := sanitizeDNS(lower)
	lossy := part != lower || part == ""
	if part == "" {
		part = fallbackRepo
	}

	suffix := "-" + formatNumber(number)
	const prefix = "pr-"
	hashed := ""
	// The hash input is case-folded: GitHub's names are case-insensitive.
	repo = strings.ToLower(repo)
	if lossy {
		hashed = "-" + shortHash(repo)
	}
	if room := maxLabel - len(prefix) - len(hashed) - len(suffix); len(part) > room {
		if hashed == "" {
			hashed = "-" + shortHash(repo)
			room -= len(hashed)
		}
		// part starts with [a-z0-9] and room >= 31, so something remains.
		part = strings.TrimRight(part[:room], "-")
	}
	return prefix + part + hashed + suffix
}

// RepositoryLabel is the label-value form of "owner/name" used for
// LabelRepository: lowercased, "/" replaced by ".", other characters outside
// [a-z0-9._-] by "-", trimmed to start and end alphanumeric; longer than 63
// characters it is truncated and ends in a short hash of the full name. The
// exact repository is kept in AnnotationRepository.
func RepositoryLabel(repo string) string {
	lower := strings.ToLower(repo)
	var b strings.Builder
	for _, r := range lower {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '.', r == '_', r == '-':
			b.WriteRune(r)
		case r == '/':
			b.WriteByte('.')
		default:
			b.WriteByte('-')
		}
	}
	v := strings.TrimFunc(b.String(), func(r rune) bool { return !isAlnum(r) })
	if len(v) > maxLabel {
		h := shortHash(repo)
		v = strings.TrimFunc(v[:maxLabel-len(h)-1], func(r rune) bool { return !isAlnum(r) }) + "-" + h
	}
	return v
}

// sanitizeDNS lowercases s, maps every character outside [a-z0-9] to '-',
// collapses runs of '-' and trims them from both ends.
func sanitizeDNS(s string) string {
	var b strings.Builder
	dash := false
	for _, r := range strings.ToLower(s) {
		if isAlnum(r) {
			if dash && b.Len() > 0 {
				b.WriteByte('-')
			}
			dash = false
			b.WriteRune(r)
			continue
		}
		dash = true
	}
	return b.String()
}

func isAlnum(r rune) bool { return (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') }

// shortHash is the first hashLen hex digits of sha256 of the lowercased input
// (GitHub repository names are case-insensitive).
func shortHash(s string) string {
	sum := sha256.Sum256([]byte(strings.ToLower(s)))
	return hex.EncodeToString(sum[:])[:hashLen]
}

func formatNumber(n int) string {
	if n >= 0 {
		return strconv.Itoa(n)
	}
	return strconv.FormatUint(uint64(-(n+1))+1, 10)
}
