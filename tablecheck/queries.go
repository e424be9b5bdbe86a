package tablecheck

import (
	"bufio"
	"fmt"
	"os"
	"strings"
)

// DocBucket is the bucket and prefix docs/queries.md's DuckDB views read;
// the checks put a local directory in its place.
const DocBucket = "s3://my-bucket/qualys"

// Queries reads the SQL blocks of a Markdown file that are marked with a
// comment line `<!-- query: NAME -->` right before their ```sql fence, by
// name: so that the tests run the documented SQL, not a copy of it.
func Queries(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := map[string]string{}
	var name string // the block being read, or the one the last marker named
	var in bool
	var sql strings.Builder
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		trimmed := strings.TrimSpace(line)
		switch {
		case in && trimmed == "```":
			out[name] = sql.String()
			in, name = false, ""
			sql.Reset()
		case in:
			sql.WriteString(line)
			sql.WriteByte('\n')
		case strings.HasPrefix(trimmed, "<!-- query:") && strings.HasSuffix(trimmed, "-->"):
			name = strings.TrimSpace(strings.TrimSuffix(strings.TrimPrefix(trimmed, "<!-- query:"), "-->"))
			if _, dup := out[name]; dup || name == "" {
				return nil, fmt.Errorf("%s:%d: query name %q empty or used twice", path, n, name)
			}
		case name != "" && trimmed == "```sql":
			in = true
		case name != "" && trimmed != "":
			return nil, fmt.Errorf("%s:%d: query %q: the marker must be followed by a ```sql block", path, n, name)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if in || name != "" {
		return nil, fmt.Errorf("%s: query %q is not closed", path, name)
	}
	return out, nil
}
