package migrations

import (
	"strings"
	"testing"
	"testing/fstest"
)

func TestAll(t *testing.T) {
	ms, err := All()
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) == 0 || ms[0].Name != "0001_init.sql" {
		t.Fatalf("migrations = %v, want 0001_init.sql first", ms)
	}
	for _, table := range []string{"previews", "deploy_attempts", "http_cache"} {
		if !strings.Contains(ms[0].SQL, "CREATE TABLE "+table+" (") {
			t.Errorf("0001_init.sql does not create %s", table)
		}
	}
}

func TestParse(t *testing.T) {
	file := &fstest.MapFile{Data: []byte("SELECT 1;")}
	for _, tc := range []struct {
		name    string
		files   []string
		wantErr string
	}{
		{"ordered", []string{"0002_b.sql", "0001_a.sql", "0003_c.sql"}, ""},
		{"gap", []string{"0001_a.sql", "0003_c.sql"}, "want 2"},
		{"duplicate", []string{"0001_a.sql", "0001_b.sql"}, "want 2"},
		{"starts at 2", []string{"0002_a.sql"}, "want 1"},
		{"bad name", []string{"0001_a.sql", "2_b.sql"}, "NNNN_description"},
		{"upper case", []string{"0001_Init.sql"}, "NNNN_description"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fsys := fstest.MapFS{"README.md": file}
			for _, f := range tc.files {
				fsys[f] = file
			}
			ms, err := Parse(fsys)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for i, m := range ms {
				if m.Version != i+1 || m.SQL != "SELECT 1;" {
					t.Errorf("ms[%d] = %+v", i, m)
				}
			}
		})
	}
}
