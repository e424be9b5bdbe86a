package validate

import (
	"bytes"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/qfetch/qfetch/internal/config"
)

// The binaries' spec types are unexported in package main, so these mirror
// them field for field; TestSpecsMirrorBinaries holds the two together (the
// fields' names, types and embedding decide the variable names), and
// TestRequiredMatchesBinaries checks the result against the built binaries.
type plannerSpec struct {
	Qualys config.Qualys
	NATS   config.NATS
	S3     config.S3
	Log    config.Log
	Plan   config.Plan
	config.Fleet
}

type workerSpec struct {
	Qualys config.Qualys
	NATS   config.NATS
	S3     config.S3
	Log    config.Log
	Worker config.Worker
	config.Fleet
}

var specs = map[string]func() any{
	"planner": func() any { return &plannerSpec{} },
	"worker":  func() any { return &workerSpec{} },
}

func vars(t *testing.T, binary string) []config.Var {
	t.Helper()
	vs, err := config.Vars(config.Prefix, specs[binary]())
	if err != nil {
		t.Fatal(err)
	}
	return vs
}

// defaultOf is the value a binary uses when env leaves name unset.
func valueOf(t *testing.T, binary string, env map[string]envVal, name string) string {
	t.Helper()
	if v, ok := env[name]; ok && v.value != "" {
		return v.value
	}
	for _, v := range vars(t, binary) {
		if v.Name == name {
			return v.Default
		}
	}
	t.Fatalf("%s reads no %s", binary, name)
	return ""
}

func TestSpecsMirrorBinaries(t *testing.T) {
	for binary, mk := range specs {
		t.Run(binary, func(t *testing.T) {
			src := filepath.Join(repoRoot, "cmd", binary, "main.go")
			f, err := parser.ParseFile(token.NewFileSet(), src, nil, parser.SkipObjectResolution)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			ast.Inspect(f, func(n ast.Node) bool {
				ts, ok := n.(*ast.TypeSpec)
				if !ok || ts.Name.Name != "spec" {
					return true
				}
				st, ok := ts.Type.(*ast.StructType)
				if !ok {
					t.Fatalf("%s: spec is not a struct", src)
				}
				for _, fl := range st.Fields.List {
					typ := exprString(fl.Type)
					tag := ""
					if fl.Tag != nil {
						tag = fl.Tag.Value
					}
					if len(fl.Names) == 0 {
						got = append(got, "embedded "+typ+" "+tag)
					}
					for _, n := range fl.Names {
						got = append(got, n.Name+" "+typ+" "+tag)
					}
				}
				return false
			})
			if got == nil {
				t.Fatalf("%s: no type spec", src)
			}
			var want []string
			rt := reflect.TypeOf(mk()).Elem()
			for i := range rt.NumField() {
				f := rt.Field(i)
				typ := "config." + f.Type.Name()
				tag := ""
				if f.Tag != "" {
					tag = "`" + string(f.Tag) + "`"
				}
				if f.Anonymous {
					want = append(want, "embedded "+typ+" "+tag)
				} else {
					want = append(want, f.Name+" "+typ+" "+tag)
				}
			}
			if !slices.Equal(got, want) {
				t.Errorf("cmd/%s spec fields\n got %q\nwant %q\nupdate the mirror in spec_test.go", binary, got, want)
			}
		})
	}
}

func exprString(e ast.Expr) string {
	switch x := e.(type) {
	case *ast.Ident:
		return x.Name
	case *ast.SelectorExpr:
		return exprString(x.X) + "." + x.Sel.Name
	case *ast.StarExpr:
		return "*" + exprString(x.X)
	}
	return "?"
}

// TestRequiredMatchesBinaries builds planner and worker and runs each with no
// QFETCH_* variable: each prints one "NAME: required" line per required
// variable and exits 2 (README, exit codes).
func TestRequiredMatchesBinaries(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binaries")
	}
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command")
	}
	dir := t.TempDir()
	root, _ := filepath.Abs(repoRoot)
	for binary := range specs {
		t.Run(binary, func(t *testing.T) {
			exe := filepath.Join(dir, binary)
			out, err := exec.Command(gobin, "build", "-C", root, "-o", exe, "./cmd/"+binary).CombinedOutput()
			if err != nil {
				t.Fatalf("go build: %v\n%s", err, out)
			}
			cmd := exec.Command(exe)
			for _, kv := range os.Environ() {
				if !strings.HasPrefix(kv, config.Prefix+"_") {
					cmd.Env = append(cmd.Env, kv)
				}
			}
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			err = cmd.Run()
			if code := cmd.ProcessState.ExitCode(); code != 2 {
				t.Fatalf("exit %d (%v), want 2; stderr:\n%s", code, err, stderr.String())
			}
			var got []string
			for _, line := range strings.Split(stderr.String(), "\n") {
				if name, rest, ok := strings.Cut(line, ": "); ok && strings.HasPrefix(rest, "required") &&
					strings.HasPrefix(name, config.Prefix+"_") {
					got = append(got, name)
				}
			}
			var want []string
			for _, v := range vars(t, binary) {
				if v.Required {
					want = append(want, v.Name)
				}
			}
			slices.Sort(got)
			slices.Sort(want)
			if len(want) == 0 || !slices.Equal(got, want) {
				t.Errorf("required: binary says %q, config.Vars says %q", got, want)
			}
		})
	}
}
