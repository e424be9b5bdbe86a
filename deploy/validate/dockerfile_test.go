package validate

import (
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/moby/patternmatcher"
	"github.com/moby/patternmatcher/ignorefile"
)

// TestDockerfile parses the root Dockerfile with buildkit's parser and checks
// it against the repo: pinned base images, a builder on go.mod's Go, static
// trimmed stamped builds of packages that exist, build-context paths that
// exist and survive .dockerignore, and a non-root runtime carrying every
// binary the overlays run.
func TestDockerfile(t *testing.T) {
	f, err := os.Open(filepath.Join(repoRoot, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	res, err := parser.Parse(f)
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	stages, metaArgs, err := instructions.Parse(res.AST, nil)
	if err != nil {
		t.Fatalf("instructions: %v", err)
	}
	if len(stages) < 2 {
		t.Fatalf("want a multi-stage build, got %d stage(s)", len(stages))
	}
	args := map[string]string{}
	for _, a := range metaArgs {
		for _, kv := range a.Args {
			if kv.Value != nil {
				args[kv.Key] = *kv.Value
			}
		}
	}
	expand := func(s string) string {
		return os.Expand(s, func(k string) string { return args[k] })
	}

	ignore := dockerignore(t)
	names := map[string]bool{}
	var built []string // binaries the build stage writes
	for i, st := range stages {
		base := expand(st.BaseName)
		if !names[base] {
			if err := imagePinned(base); err != nil {
				t.Errorf("stage %d FROM %s: %v", i, base, err)
			}
		}
		if strings.HasPrefix(base, "golang:") {
			goMinor := goModMinor(t)
			if tag := strings.TrimPrefix(base, "golang:"); !strings.HasPrefix(tag, goMinor+".") && !strings.HasPrefix(tag, goMinor+"-") {
				t.Errorf("builder %s is not go.mod's Go %s", base, goMinor)
			}
		}
		for _, cmd := range st.Commands {
			switch c := cmd.(type) {
			case *instructions.CopyCommand:
				if c.From != "" {
					if !names[c.From] {
						t.Errorf("COPY --from=%s: no such earlier stage", c.From)
					}
					for _, src := range c.SourcePaths {
						if strings.HasPrefix(src, "/out/") && !slices.Contains(built, path.Base(src)) {
							t.Errorf("COPY --from=%s %s: not built", c.From, src)
						}
					}
					continue
				}
				for _, src := range c.SourcePaths {
					p := filepath.Join(repoRoot, filepath.FromSlash(src))
					if _, err := os.Stat(p); err != nil {
						t.Errorf("COPY %s: %v", src, err)
					}
					if excluded, _ := ignore.MatchesOrParentMatches(strings.TrimSuffix(src, "/")); excluded {
						t.Errorf("COPY %s: excluded by .dockerignore", src)
					}
				}
			case *instructions.RunCommand:
				line := strings.Join(c.CmdLine, " ")
				if !strings.Contains(line, "go build") {
					continue
				}
				env := map[string]string{}
				for _, e := range st.Commands {
					if ec, ok := e.(*instructions.EnvCommand); ok {
						for _, kv := range ec.Env {
							env[kv.Key] = kv.Value
						}
					}
				}
				if env["CGO_ENABLED"] != "0" && !strings.Contains(line, "CGO_ENABLED=0") {
					t.Error("go build without CGO_ENABLED=0: not a static binary")
				}
				if !strings.Contains(line, "-trimpath") {
					t.Error("go build without -trimpath")
				}
				checkVersionStamp(t, line)
				for _, pkg := range regexp.MustCompile(`\./cmd/[\w-]+`).FindAllString(line, -1) {
					if _, err := os.Stat(filepath.Join(repoRoot, pkg, "main.go")); err != nil {
						t.Errorf("go build %s: %v", pkg, err)
					}
					built = append(built, path.Base(pkg))
				}
			}
		}
		names[st.Name] = true
	}

	final := stages[len(stages)-1]
	var user string
	var copied []string
	for _, cmd := range final.Commands {
		switch c := cmd.(type) {
		case *instructions.UserCommand:
			user = c.User
		case *instructions.CopyCommand:
			for _, src := range c.SourcePaths {
				copied = append(copied, path.Join(c.DestPath, path.Base(src)))
			}
		}
	}
	if user == "" || strings.HasPrefix(user, "0") || strings.HasPrefix(user, "root") {
		t.Errorf("runtime USER %q: want non-root", user)
	}
	// Every qfetch binary an overlay runs is in the image where it looks.
	for _, name := range overlayNames {
		for _, p := range build(t, name).pods() {
			for _, c := range containers(p.spec) {
				if binary(c) == "" || len(c.Command) == 0 {
					continue
				}
				if !slices.Contains(copied, c.Command[0]) {
					t.Errorf("overlays/%s %s: runs %s, which the image does not have (has %q)", name, p.owner, c.Command[0], copied)
				}
				if uid := p.spec.SecurityContext.RunAsUser; uid == nil || !strings.HasPrefix(user, strconv.FormatInt(*uid, 10)) {
					t.Errorf("overlays/%s %s: runAsUser %v differs from the image's USER %s", name, p.owner, uid, user)
				}
			}
		}
	}
}

func dockerignore(t *testing.T) *patternmatcher.PatternMatcher {
	t.Helper()
	f, err := os.Open(filepath.Join(repoRoot, ".dockerignore"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	pats, err := ignorefile.ReadAll(f)
	if err != nil {
		t.Fatal(err)
	}
	pm, err := patternmatcher.New(pats)
	if err != nil {
		t.Fatal(err)
	}
	return pm
}

// goModMinor is "1.26" for `go 1.26.0` in the root go.mod.
func goModMinor(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindSubmatch(b)
	if m == nil {
		t.Fatal("go.mod: no go line")
	}
	return string(m[1])
}

// checkVersionStamp: go build stamps a version with -X, and every -X names
// a string variable that exists.
func checkVersionStamp(t *testing.T, line string) {
	t.Helper()
	stamps := regexp.MustCompile(`-X[ =]github\.com/qfetch/qfetch/([\w/]+)\.(\w+)=`).FindAllStringSubmatch(line, -1)
	if len(stamps) == 0 {
		t.Error("go build does not stamp a version with -ldflags -X")
		return
	}
	for _, m := range stamps {
		if !stringVarExists(m[1], m[2]) {
			t.Errorf("-X %s.%s: no such string variable", m[1], m[2])
		}
	}
}

// stringVarExists: package dir (below the repo) declares var name = "…".
func stringVarExists(dir, name string) bool {
	files, _ := filepath.Glob(filepath.Join(repoRoot, filepath.FromSlash(dir), "*.go"))
	re := regexp.MustCompile(`(?m)^var ` + name + ` = "`)
	for _, f := range files {
		if b, err := os.ReadFile(f); err == nil && re.Match(b) {
			return true
		}
	}
	return false
}
