package render

// KindsView is kindsView for the kernel tests of package render_test.
var KindsView = kindsView

// LocalModeOptions is localModeOptions for the kernel tests.
var LocalModeOptions = localModeOptions
