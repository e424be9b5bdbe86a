package app

import (
	"runtime"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestBuildOf(t *testing.T) {
	info := func(settings ...debug.BuildSetting) func() (*debug.BuildInfo, bool) {
		return func() (*debug.BuildInfo, bool) { return &debug.BuildInfo{Settings: settings}, true }
	}
	rev := debug.BuildSetting{Key: "vcs.revision", Value: "abc123"}
	for _, tc := range []struct {
		name    string
		stamped string
		read    func() (*debug.BuildInfo, bool)
		want    string
	}{
		{"no build info", "", func() (*debug.BuildInfo, bool) { return nil, false }, "unknown"},
		{"no vcs stamp", "", info(), "unknown"},
		{"clean", "", info(rev, debug.BuildSetting{Key: "vcs.modified", Value: "false"}), "abc123"},
		{"modified", "", info(rev, debug.BuildSetting{Key: "vcs.modified", Value: "true"}), "abc123-dirty"},
		{"modified without revision", "", info(debug.BuildSetting{Key: "vcs.modified", Value: "true"}), "unknown"},
		{"stamped, no vcs stamp", "def456", info(), "def456"},
		{"stamped wins over the vcs stamp", "def456", info(rev), "def456"},
	} {
		got := buildOf("v1.2.3", tc.stamped, tc.read)
		if got != (Identity{Version: "v1.2.3", Revision: tc.want, GoVersion: runtime.Version()}) {
			t.Errorf("%s: %+v, want revision %q", tc.name, got, tc.want)
		}
	}
}

func TestRegisterBuildInfo(t *testing.T) {
	reg := prometheus.NewRegistry()
	RegisterBuildInfo(reg)
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	b := BuildInfo()
	want := map[string]string{"version": b.Version, "revision": b.Revision, "goversion": runtime.Version()}
	for _, mf := range families {
		if mf.GetName() != "qfetch_build_info" {
			continue
		}
		if len(mf.GetMetric()) != 1 {
			t.Fatalf("%d series, want 1", len(mf.GetMetric()))
		}
		m := mf.GetMetric()[0]
		got := map[string]string{}
		for _, l := range m.GetLabel() {
			got[l.GetName()] = l.GetValue()
		}
		if len(got) != len(want) || got["version"] != want["version"] || got["revision"] != want["revision"] ||
			got["goversion"] != want["goversion"] {
			t.Errorf("labels %v, want %v", got, want)
		}
		if m.GetGauge().GetValue() != 1 {
			t.Errorf("value %v, want 1", m.GetGauge().GetValue())
		}
		return
	}
	t.Fatal("no qfetch_build_info")
}

func TestArgs(t *testing.T) {
	for _, tc := range []struct {
		args      []string
		exit      bool
		code      int
		out, errs string // substrings; "" wants nothing written
	}{
		{nil, false, 0, "", ""},
		{[]string{}, false, 0, "", ""},
		{[]string{"-h"}, true, 0, "usage: x", ""},
		{[]string{"--help"}, true, 0, "usage: x", ""},
		{[]string{"help"}, true, 0, "usage: x", ""},
		{[]string{"--version"}, true, 0, runtime.Version(), ""},
		{[]string{"-version"}, true, 0, "x " + Version, ""},
		{[]string{"--bogus"}, true, 2, "", "see x --help"},
		{[]string{"run"}, true, 2, "", `unexpected argument "run"`},
		{[]string{"--version", "extra"}, true, 2, "", "see x --help"},
	} {
		var out, errs strings.Builder
		code, exit := Args("x", "usage: x\n", tc.args, &out, &errs)
		if code != tc.code || exit != tc.exit {
			t.Errorf("%q: (%d, %v), want (%d, %v)", tc.args, code, exit, tc.code, tc.exit)
		}
		for _, c := range []struct{ got, want string }{{out.String(), tc.out}, {errs.String(), tc.errs}} {
			if (c.want == "") != (c.got == "") || !strings.Contains(c.got, c.want) {
				t.Errorf("%q: wrote %q, want it to contain %q", tc.args, c.got, c.want)
			}
		}
	}
}
