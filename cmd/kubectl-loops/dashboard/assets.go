// Package dashboard holds the templates and static files of
// `kubectl loops dashboard`, embedded in the binary: nothing is fetched at
// run time.
package dashboard

import "embed"

// Files holds templates/*.html (html/template) and static/ (the stylesheet
// and the script that applies live updates).
//
//go:embed templates/*.html static/*
var Files embed.FS
