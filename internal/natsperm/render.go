package natsperm

import (
	"fmt"
	"strconv"
	"strings"
)

// User is one NATS user of the rendered config: a role and the public NKey
// its process signs with (U…), or a "$NAME" the server reads from its
// environment when it loads the config, so that the committed config holds
// no deployment's keys.
type User struct {
	Role Role
	NKey string
}

// EnvUsers are one user per role whose public NKey the server takes from
// QFETCH_NKEY_<ROLE>: the prod overlay's.
func EnvUsers() []User {
	out := make([]User, 0, len(Roles))
	for _, r := range Roles {
		out = append(out, User{Role: r, NKey: "$" + EnvVar(r)})
	}
	return out
}

// EnvVar names the server's environment variable holding role's public NKey.
func EnvVar(r Role) string { return "QFETCH_NKEY_" + strings.ToUpper(string(r)) }

// Authorization renders the nats-server authorization block for users:
// one user per entry, with its role's permissions. Include it from the
// server's config (`include ./qfetch-auth.conf`). A user's role decides
// everything it may do; anything not listed is refused.
func Authorization(users []User) string {
	var b strings.Builder
	b.WriteString("# qfetch's NATS users and what each may do. Rendered from\n")
	b.WriteString("# internal/natsperm (natsperm.Authorization); do not edit by hand:\n")
	b.WriteString("# deploy/validate checks this file equals the rendered one.\n")
	b.WriteString("authorization {\n  users = [\n")
	for _, u := range users {
		p := For(u.Role)
		fmt.Fprintf(&b, "    # %s\n    {\n      nkey: %s\n      permissions: {\n", u.Role, nkeyValue(u.NKey))
		list(&b, "publish", p.Publish)
		list(&b, "subscribe", p.Subscribe)
		b.WriteString("      }\n    }\n")
	}
	b.WriteString("  ]\n}\n")
	return b.String()
}

// nkeyValue leaves a $VARIABLE bare (the server's config resolves it) and
// quotes a key.
func nkeyValue(k string) string {
	if strings.HasPrefix(k, "$") {
		return k
	}
	return strconv.Quote(k)
}

func list(b *strings.Builder, what string, subjects []string) {
	fmt.Fprintf(b, "        %s: {\n          allow: [\n", what)
	for _, s := range subjects {
		// Quoted: a bare $JS... would read as a variable.
		fmt.Fprintf(b, "            %s\n", strconv.Quote(s))
	}
	b.WriteString("          ]\n        }\n")
}
