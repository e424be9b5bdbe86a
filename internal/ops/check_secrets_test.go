package ops_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/qfetch/qfetch/internal/config"
	"github.com/qfetch/qfetch/internal/ops"
	"github.com/qfetch/qfetch/internal/qualys"
)

// echoAPI fails every call with text a proxy or gateway echoed.
type echoAPI struct{ text string }

func (e echoAPI) Check(context.Context) (qualys.Limits, error) {
	return qualys.Limits{}, errors.New(e.text)
}

func (e echoAPI) Detections(context.Context, url.Values, func(uint64)) (*qualys.Response, error) {
	return nil, errors.New(e.text)
}

// TestCheckHidesProxyCredentials (#17.7): the credentials of HTTPS_PROXY,
// which config.Load reads for the scrubber, stay out of `qfetch check`'s
// output in whatever encoding a proxy echoes them, text and JSON alike.
func TestCheckHidesProxyCredentials(t *testing.T) {
	const user, pass = "svc-proxy", "Pr0xy-Secret/9+"
	t.Setenv("HTTPS_PROXY", "http://"+user+":"+url.QueryEscape(pass)+"@proxy.internal:3128")
	var spec struct{ Log config.Log }
	if err := config.Load(config.Prefix, &spec); err != nil {
		t.Fatal(err)
	}
	basic := base64.StdEncoding.EncodeToString([]byte(user + ":" + pass))
	echo := "407 from proxy: request=" + url.QueryEscape("Proxy-Authorization: Basic "+basic) +
		"; raw " + basic + "; password " + pass + "; url http://" + user + ":" + url.QueryEscape(pass) + "@proxy.internal:3128"
	for _, asJSON := range []bool{false, true} {
		var out bytes.Buffer
		_, err := ops.Check(t.Context(), ops.CheckConfig{NATSURL: "nats://127.0.0.1:1", API: echoAPI{echo}, Timeout: 2 * time.Second},
			ops.Output{W: &out, JSON: asJSON})
		if !errors.Is(err, ops.ErrCheckFailed) {
			t.Fatalf("JSON=%v: err = %v, want ErrCheckFailed", asJSON, err)
		}
		got := out.String()
		for _, leak := range []string{pass, url.QueryEscape(pass), basic, url.QueryEscape(basic), strings.ReplaceAll(url.QueryEscape(basic), "%", "\\u0025")} {
			if strings.Contains(got, leak) {
				t.Errorf("JSON=%v: output holds %q:\n%s", asJSON, leak, got)
			}
		}
		if !strings.Contains(got, "407 from proxy") {
			t.Errorf("JSON=%v: the Qualys failure is missing:\n%s", asJSON, got)
		}
	}
}
