package ssh

import "fmt"

// The write script checks what it wrote against what it meant to write before it renames
// anything (README, "What a rotation does on the hosts"). The check uses POSIX cksum, which
// every host has (coreutils, busybox): a CRC-32 with the polynomial 0x04C11DB7, most significant
// bit first, over the bytes and then the byte count, complemented. hash/crc32 is the reflected
// variant and gives other values.

const cksumPoly = 0x04C11DB7

var cksumTable = func() (t [256]uint32) {
	for i := range t {
		c := uint32(i) << 24
		for range 8 {
			if c&0x80000000 != 0 {
				c = c<<1 ^ cksumPoly
			} else {
				c <<= 1
			}
		}
		t[i] = c
	}
	return t
}()

// cksum returns what `cksum < FILE` prints for a file holding data: "CRC BYTES".
func cksum(data []byte) string {
	var crc uint32
	for _, b := range data {
		crc = crc<<8 ^ cksumTable[byte(crc>>24)^b]
	}
	for n := uint64(len(data)); n > 0; n >>= 8 {
		crc = crc<<8 ^ cksumTable[byte(crc>>24)^byte(n)]
	}
	return fmt.Sprintf("%d %d", ^crc, len(data))
}
