package demo

import (
	"fmt"
	"html"
	"regexp"
	"strings"
)

var (
	htmlTag        = regexp.MustCompile(`<[^>]+>`)
	tableRule      = regexp.MustCompile(`^\|[\s|:-]*\|$`)
	markdownEsc    = regexp.MustCompile(`\\([\\` + "`" + `*_{}\[\]()#+\-.!|<>~])`)
	inlineCode     = regexp.MustCompile("`+([^`]*)`+")
	strongOrEmph   = regexp.MustCompile(`\*\*([^*]+)\*\*`)
	detailsSummary = regexp.MustCompile(`<summary>(.*?)</summary>`)
)

// githubView renders a comment's Markdown roughly as GitHub shows it: the
// hidden marker and HTML tags disappear, headings and tables become plain
// lines, escapes and inline-code backticks are removed. Code blocks are
// kept as they are.
func githubView(body string) []string {
	var out []string
	inFence := false
	for _, line := range strings.Split(strings.TrimRight(body, "\n"), "\n") {
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "```") {
			inFence = !inFence
			continue
		}
		if inFence {
			out = append(out, "    "+line)
			continue
		}
		if strings.HasPrefix(trimmed, "<!--") && strings.HasSuffix(trimmed, "-->") {
			continue // GitHub hides HTML comments: previewd's marker
		}
		if m := detailsSummary.FindStringSubmatch(trimmed); m != nil {
			out = append(out, "▸ "+m[1])
			continue
		}
		if tableRule.MatchString(trimmed) {
			continue // "| | |" header and "|---|---|" rule
		}
		if strings.HasPrefix(trimmed, "|") && strings.HasSuffix(trimmed, "|") {
			cells := splitCells(trimmed)
			if len(cells) == 2 {
				out = append(out, fmt.Sprintf("%-10s %s", inline(cells[0]), inline(cells[1])))
			} else {
				for i := range cells {
					cells[i] = inline(cells[i])
				}
				out = append(out, strings.Join(cells, "  "))
			}
			continue
		}
		trimmed = strings.TrimLeft(trimmed, "#")
		out = append(out, inline(strings.TrimSpace(trimmed)))
	}
	// Drop leading, trailing and doubled blank lines.
	var clean []string
	for _, l := range out {
		if l == "" && (len(clean) == 0 || clean[len(clean)-1] == "") {
			continue
		}
		clean = append(clean, l)
	}
	for len(clean) > 0 && clean[len(clean)-1] == "" {
		clean = clean[:len(clean)-1]
	}
	return clean
}

// splitCells splits a table row on unescaped pipes.
func splitCells(row string) []string {
	row = strings.TrimSuffix(strings.TrimPrefix(row, "|"), "|")
	var cells []string
	var b strings.Builder
	for i := 0; i < len(row); i++ {
		switch {
		case row[i] == '\\' && i+1 < len(row) && row[i+1] == '|':
			b.WriteString(`\|`)
			i++
		case row[i] == '|':
			cells = append(cells, strings.TrimSpace(b.String()))
			b.Reset()
		default:
			b.WriteByte(row[i])
		}
	}
	return append(cells, strings.TrimSpace(b.String()))
}

func inline(s string) string {
	s = htmlTag.ReplaceAllString(s, "")
	s = strongOrEmph.ReplaceAllString(s, "$1")
	s = inlineCode.ReplaceAllString(s, "$1")
	return html.UnescapeString(markdownEsc.ReplaceAllString(s, "$1"))
}
