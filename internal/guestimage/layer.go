package guestimage

// A layer is a zip unpacked into /opt, in order, before the function
// starts: it is checked as code is (entries inside the root, Lambda's size
// limits, every entry read whole) but needs no bootstrap.

// ValidateLayerZip is what a layer upload must pass; it returns the layer's
// unpacked size, which counts towards the 250 MB a function and its layers
// may take together.
func ValidateLayerZip(data []byte) (int64, error) {
	c, _, _, err := readEntries(data)
	if err != nil {
		return 0, err
	}
	if err := c.verify(); err != nil {
		return 0, err
	}
	return c.size, nil
}

// UnzippedSize is the unpacked size of a zip, from its directory alone:
// what a function's code counts towards the 250 MB limit with its layers.
func UnzippedSize(data []byte) (int64, error) {
	c, _, _, err := readEntries(data)
	if err != nil {
		return 0, err
	}
	return c.size, nil
}
