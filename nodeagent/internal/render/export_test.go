package render

// KindsView is kindsView for the kernel tests of package render_test.
var KindsView = kindsView
