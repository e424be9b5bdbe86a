package tables

import (
	"sync"

	"github.com/klauspost/compress/zstd"
	"github.com/parquet-go/parquet-go/format"
)

// zstdWindow is the compressor's window. A page is at most parquet-go's
// page buffer (256 KiB), so a longer window finds nothing more, and the
// library's default (8 MiB, a 16 MiB history per encoder) would be most of
// a conversion's memory.
const zstdWindow = 512 << 10

// zstdCodec is parquet-go's compress.Codec for ZSTD with a window sized to
// a page; it pools its encoders and decoders for every file and goroutine.
type zstdCodecT struct {
	enc sync.Pool
	dec sync.Pool
}

var zstdCodec = &zstdCodecT{}

func (*zstdCodecT) String() string { return "ZSTD" }

func (*zstdCodecT) CompressionCodec() format.CompressionCodec { return format.Zstd }

func (c *zstdCodecT) Encode(dst, src []byte) ([]byte, error) {
	e, _ := c.enc.Get().(*zstd.Encoder)
	if e == nil {
		var err error
		e, err = zstd.NewWriter(nil,
			zstd.WithEncoderLevel(zstd.SpeedDefault),
			zstd.WithEncoderConcurrency(1),
			zstd.WithWindowSize(zstdWindow),
			zstd.WithLowerEncoderMem(true),
			zstd.WithZeroFrames(true),
			zstd.WithEncoderCRC(false))
		if err != nil {
			return dst, err
		}
	}
	defer c.enc.Put(e)
	return e.EncodeAll(src, dst[:0]), nil
}

func (c *zstdCodecT) Decode(dst, src []byte) ([]byte, error) {
	d, _ := c.dec.Get().(*zstd.Decoder)
	if d == nil {
		var err error
		if d, err = zstd.NewReader(nil, zstd.WithDecoderConcurrency(1)); err != nil {
			return dst, err
		}
	}
	defer c.dec.Put(d)
	return d.DecodeAll(src, dst[:0])
}
