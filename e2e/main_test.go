package e2e

import (
	"testing"

	"github.com/qfetch/qfetch/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }
