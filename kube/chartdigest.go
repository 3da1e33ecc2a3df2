package kube

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
)

// maxChartBytes bounds what ChartDigest reads: a chart directory is
// kilobytes; anything near this is a mistake (a build directory).
const maxChartBytes = 64 << 20

// ChartDigest identifies the contents of a chart directory (or packaged
// .tgz): a sha256 over every regular file's path and bytes, in path order.
// Any change of a template, of values.yaml or of a vendored dependency
// changes it, so that previewd upgrades the previews built from it.
func ChartDigest(path string) (string, error) {
	info, err := os.Stat(path)
	if err != nil {
		return "", fmt.Errorf("reading chart %s: %w", path, err)
	}
	h := sha256.New()
	total := int64(0)
	add := func(name, file string) error {
		f, err := os.Open(file)
		if err != nil {
			return err
		}
		defer f.Close()
		fmt.Fprintf(h, "%s\x00", name)
		n, err := io.Copy(h, io.LimitReader(f, maxChartBytes-total+1))
		total += n
		if err == nil && total > maxChartBytes {
			err = fmt.Errorf("chart larger than %d MiB", maxChartBytes>>20)
		}
		return err
	}
	if !info.IsDir() {
		if err := add(filepath.Base(path), path); err != nil {
			return "", fmt.Errorf("reading chart %s: %w", path, err)
		}
		return hex.EncodeToString(h.Sum(nil)[:12]), nil
	}
	var files []string
	err = filepath.WalkDir(path, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			files = append(files, p)
		}
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("reading chart %s: %w", path, err)
	}
	sort.Strings(files)
	for _, f := range files {
		rel, _ := filepath.Rel(path, f)
		if err := add(filepath.ToSlash(rel), f); err != nil {
			return "", fmt.Errorf("reading chart %s: %w", path, err)
		}
	}
	return hex.EncodeToString(h.Sum(nil)[:12]), nil
}
