// Package config gives controlplane and nodeagent a configuration file,
// as kube-proxy's --config and --write-config-to do: a versioned YAML
// document (apiVersion config.doorman.io/v1alpha1, kind
// ControlPlaneConfiguration or NodeAgentConfiguration) with one field per
// flag, named by the flag in lowerCamelCase (--conntrack-max-per-core is
// conntrackMaxPerCore).
//
// The fields are not declared anywhere: they are read off the binary's
// flag.FlagSet, so a new flag is a field of the file with no code here, and
// a value from the file goes through the flag's own Set, so it is checked
// exactly as on the command line. A flag's default is overridden by the
// file, and the file by the command line.
//
// The package is pure apart from reading and writing the files it is
// named, and must not import either binary's packages.
package config
