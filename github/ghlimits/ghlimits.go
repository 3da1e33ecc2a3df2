// Package ghlimits holds limits GitHub imposes, shared by the client
// (package github) and the fake that stands in for GitHub in tests
// (package githubfake), which cannot import each other.
package ghlimits

// MaxCommentLength is GitHub's limit on an issue or pull request comment
// body, in characters (runes).
const MaxCommentLength = 65536
