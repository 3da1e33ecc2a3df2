// Package migrations holds previewd's PostgreSQL schema as numbered SQL
// files embedded in the binary. state.Store.Migrate applies them.
//
// Files are named NNNN_description.sql, numbered from 0001 without gaps.
// Each runs in one transaction, so it must not use statements that refuse
// to (CREATE INDEX CONCURRENTLY, ALTER TYPE ... ADD VALUE before 12).
// A file, once released, is never edited: change the schema with a new one.
package migrations

import (
	"embed"
	"fmt"
	"io/fs"
	"regexp"
	"sort"
	"strconv"
)

// FS holds the migration files.
//
//go:embed *.sql
var FS embed.FS

// Migration is one schema change.
type Migration struct {
	Version int    // from the file name: 0003_x.sql is version 3
	Name    string // the file name
	SQL     string
}

var fileName = regexp.MustCompile(`^(\d{4})_[a-z0-9_]+\.sql$`)

// All returns the embedded migrations in order.
func All() ([]Migration, error) { return Parse(FS) }

// Parse reads the *.sql files at the root of fsys and returns them sorted
// by version. It rejects badly named files, duplicate versions and gaps.
func Parse(fsys fs.FS) ([]Migration, error) {
	names, err := fs.Glob(fsys, "*.sql")
	if err != nil {
		return nil, fmt.Errorf("listing migrations: %w", err)
	}
	var ms []Migration
	for _, name := range names {
		m := fileName.FindStringSubmatch(name)
		if m == nil {
			return nil, fmt.Errorf("migration %q: name is not NNNN_description.sql", name)
		}
		v, _ := strconv.Atoi(m[1]) // four digits
		b, err := fs.ReadFile(fsys, name)
		if err != nil {
			return nil, fmt.Errorf("reading migration %s: %w", name, err)
		}
		ms = append(ms, Migration{Version: v, Name: name, SQL: string(b)})
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].Version < ms[j].Version })
	for i, m := range ms {
		if m.Version != i+1 {
			return nil, fmt.Errorf("migration %s: version %d, want %d (versions start at 1, without gaps or duplicates)",
				m.Name, m.Version, i+1)
		}
	}
	return ms, nil
}
