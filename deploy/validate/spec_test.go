package validate

import (
	"bytes"
	"cmp"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
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
	KB     config.KB
	config.Fleet
}

type workerSpec struct {
	Qualys config.Qualys
	NATS   config.NATS
	S3     config.S3
	Log    config.Log
	Worker config.Worker
	Tables config.Tables
	config.Fleet
}

// exporterSpec is `qfetch exporter`'s: no Qualys section.
type exporterSpec struct {
	NATS     config.NATS
	S3       config.S3
	Log      config.Log
	Exporter config.Exporter
	config.Fleet
}

// specs are the programs the overlays run with QFETCH_* settings, by the
// name binary() gives their containers.
var specs = map[string]func() any{
	"planner":  func() any { return &plannerSpec{} },
	"worker":   func() any { return &workerSpec{} },
	"exporter": func() any { return &exporterSpec{} },
}

// specSource is where a program declares its spec and how it is run: a
// `type spec struct` in file (or the type named typ), or, with fn set, the
// struct-typed `var` in that function; pkg and args run it.
type specSource struct {
	file, fn, typ string
	pkg           string
	args          []string
}

var specSources = map[string]specSource{
	"planner":  {file: "cmd/planner/main.go", pkg: "./cmd/planner"},
	"worker":   {file: "internal/app/roles.go", typ: "WorkerSpec", pkg: "./cmd/worker"},
	"exporter": {file: "cmd/qfetch/exporter.go", fn: "runExporter", pkg: "./cmd/qfetch", args: []string{"exporter"}},
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
			src := specSources[binary]
			if src.file == "" {
				t.Fatalf("no specSources entry for %s", binary)
			}
			file := filepath.Join(repoRoot, filepath.FromSlash(src.file))
			f, err := parser.ParseFile(token.NewFileSet(), file, nil, parser.SkipObjectResolution)
			if err != nil {
				t.Fatal(err)
			}
			st := specStruct(f, src.fn, src.typ)
			if st == nil {
				if src.fn == "" {
					t.Fatalf("%s: no type %s struct", src.file, cmp.Or(src.typ, "spec"))
				}
				t.Fatalf("%s: no struct-typed var in func %s", src.file, src.fn)
			}
			var got []string
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
				t.Errorf("%s spec fields\n got %q\nwant %q\nupdate the mirror in spec_test.go", src.file, got, want)
			}
		})
	}
}

// specStruct finds a program's spec: `type spec struct` (or typ) at top
// level, or, in func fn, the one variable declared with a struct type.
func specStruct(f *ast.File, fn, typ string) *ast.StructType {
	typ = cmp.Or(typ, "spec")
	var found *ast.StructType
	var n int
	for _, d := range f.Decls {
		switch d := d.(type) {
		case *ast.GenDecl:
			if fn != "" || d.Tok != token.TYPE {
				continue
			}
			for _, sp := range d.Specs {
				if ts := sp.(*ast.TypeSpec); ts.Name.Name == typ {
					if st, ok := ts.Type.(*ast.StructType); ok {
						found, n = st, n+1
					}
				}
			}
		case *ast.FuncDecl:
			if fn == "" || d.Recv != nil || d.Name.Name != fn || d.Body == nil {
				continue
			}
			ast.Inspect(d.Body, func(x ast.Node) bool {
				vs, ok := x.(*ast.ValueSpec)
				if !ok {
					return true
				}
				if st, ok := vs.Type.(*ast.StructType); ok {
					found, n = st, n+len(vs.Names)
				}
				return true
			})
		}
	}
	if n != 1 {
		return nil
	}
	return found
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

// TestRequiredMatchesBinaries builds each program and runs it with no
// QFETCH_* variable: each prints one "NAME: required" line per required
// variable and exits 2 (README, exit codes).
func TestRequiredMatchesBinaries(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binaries")
	}
	for binary := range specs {
		t.Run(binary, func(t *testing.T) {
			t.Parallel()
			src := specSources[binary]
			exe := goBuild(t, src.pkg)
			cmd := exec.Command(exe, src.args...)
			for _, kv := range os.Environ() {
				if !strings.HasPrefix(kv, config.Prefix+"_") {
					cmd.Env = append(cmd.Env, kv)
				}
			}
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			err := cmd.Run()
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
				t.Errorf("required: %s says %q, config.Vars says %q", strings.Join(append([]string{src.pkg}, src.args...), " "), got, want)
			}
		})
	}
}

var (
	buildMu   sync.Mutex
	buildsDir string
	builds    = map[string]*buildResult{}
)

type buildResult struct {
	once sync.Once
	exe  string
	err  error
	out  []byte
}

// goBuild builds a package of the root module once per test binary (planner,
// worker and qfetch are needed by several tests) and returns the executable.
func goBuild(t *testing.T, pkg string) string {
	t.Helper()
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command")
	}
	buildMu.Lock()
	if buildsDir == "" {
		if buildsDir, err = os.MkdirTemp("", "qfetch-deploy-validate-"); err != nil {
			buildMu.Unlock()
			t.Fatal(err)
		}
	}
	b := builds[pkg]
	if b == nil {
		b = &buildResult{}
		builds[pkg] = b
	}
	dir := buildsDir
	buildMu.Unlock()
	b.once.Do(func() {
		root, _ := filepath.Abs(repoRoot)
		b.exe = filepath.Join(dir, strings.ReplaceAll(strings.Trim(pkg, "./"), "/", "_"))
		b.out, b.err = exec.Command(gobin, "build", "-C", root, "-o", b.exe, pkg).CombinedOutput()
	})
	if b.err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, b.err, b.out)
	}
	return b.exe
}

func TestMain(m *testing.M) {
	code := m.Run()
	if buildsDir != "" {
		os.RemoveAll(buildsDir)
	}
	os.Exit(code)
}
