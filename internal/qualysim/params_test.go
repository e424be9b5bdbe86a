package qualysim

import (
	"testing"
)

func TestParseFlagAndLimit(t *testing.T) {
	for _, c := range []struct {
		in      string
		flag    bool
		flagErr bool
		limit   int
		limErr  bool
	}{
		{in: "0", flag: false, limit: 0},
		{in: "1", flag: true, limit: 1},
		{in: "2", flagErr: true, limit: 2},
		{in: "", flagErr: true, limErr: true},
		{in: "true", flagErr: true, limErr: true},
		{in: "-1", flagErr: true, limErr: true},
		{in: "2147483647", flagErr: true, limit: 2147483647},
		{in: "2147483648", flagErr: true, limErr: true},
	} {
		f, err := parseFlag(c.in)
		if (err != nil) != c.flagErr || (err == nil && f != c.flag) {
			t.Errorf("parseFlag(%q) = %v, %v; want %v, error %v", c.in, f, err, c.flag, c.flagErr)
		}
		n, err := parseLimit(c.in)
		if (err != nil) != c.limErr || (err == nil && n != c.limit) {
			t.Errorf("parseLimit(%q) = %d, %v; want %d, error %v", c.in, n, err, c.limit, c.limErr)
		}
	}
}

func TestOptionalKeepsValueWhenAbsentAndNamesTheKeyWhenBad(t *testing.T) {
	ps, err := parseParams("a=7&b=x&a=9", nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		key  string
		want uint64
		text string // the refusal's text; "" for none
	}{
		{key: "a", want: 9}, // the last of a repeated parameter
		{key: "c", want: 42},
		{key: "b", want: 42, text: "parameter b has invalid value: x (not a positive integer)"},
	} {
		dst := uint64(42)
		aerr := optional(ps, c.key, parsePositive, "not a positive integer", &dst)
		switch {
		case c.text == "" && aerr != nil:
			t.Errorf("%s: refused: %s", c.key, aerr.text)
		case c.text != "" && (aerr == nil || aerr.text != c.text || aerr.code != 1905 || aerr.status != 400):
			t.Errorf("%s: got %+v, want 400/1905 %q", c.key, aerr, c.text)
		}
		if dst != c.want {
			t.Errorf("%s: value %d, want %d", c.key, dst, c.want)
		}
	}
}

func TestAppendDoctype(t *testing.T) {
	for _, c := range []struct {
		decl bool
		root string
		url  []string
		want string
	}{
		{false, "SIMPLE_RETURN", []string{"http://h", "/api/2.0/simple_return.dtd"},
			"<!DOCTYPE SIMPLE_RETURN SYSTEM \"http://h/api/2.0/simple_return.dtd\">\n"},
		{true, "ABOUT", []string{"https://q", "/about.dtd"},
			xmlDecl + "<!DOCTYPE ABOUT SYSTEM \"https://q/about.dtd\">\n"},
		{true, "HOST_LIST_OUTPUT", []string{"http://h", "/api/2.0/fo/asset/host/", "host_list_output.dtd"},
			xmlDecl + "<!DOCTYPE HOST_LIST_OUTPUT SYSTEM \"http://h/api/2.0/fo/asset/host/host_list_output.dtd\">\n"},
	} {
		if got := string(appendDoctype([]byte("x"), c.decl, c.root, c.url...)); got != "x"+c.want {
			t.Errorf("appendDoctype(%v, %s) = %q, want %q", c.decl, c.root, got, "x"+c.want)
		}
	}
}
