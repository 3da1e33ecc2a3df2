package kube

import (
	"strings"
	"testing"
)

var sinkName string

func BenchmarkNamespaceNameShort(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		sinkName = NamespaceName("acme/web", 1234)
	}
}

func BenchmarkNamespaceNameLossy(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		sinkName = NamespaceName("Acme/My_Service.v2", 1234)
	}
}

func BenchmarkNamespaceNameTruncated(b *testing.B) {
	repo := "acme/" + strings.Repeat("very-long-repository-name-", 4)
	b.ReportAllocs()
	for b.Loop() {
		sinkName = NamespaceName(repo, 123456)
	}
}
