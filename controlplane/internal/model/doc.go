// Package model turns Kubernetes Services, EndpointSlices, Nodes and
// ServiceCIDRs into the entries of the nodes' views (doormanv1.ServicePort
// and doormanv1.Node; every Node entry carries the union of the
// ServiceCIDR objects' ranges).
//
// It is pure: it takes API objects and returns values and errors. It must not
// import client-go, gRPC, logging or anything that reads a clock.
//
// It reads and keeps Services and EndpointSlices in the forms of package
// compact (what it reads of them, and their identity), which the
// informers' caches hold too; FuzzCompactForms checks that they give the
// entries the objects themselves give.
//
// Most Services look the same on every node, so a key's value is a Value: one
// Default for every node, plus overrides by node name and by zone for the
// few Services whose endpoints depend on where the traffic starts
// (internalTrafficPolicy/externalTrafficPolicy Local, topology hints). Nodes
// without an override share the Default.
//
// ClusterIPs, externalIPs and LoadBalancer IPs share one address space, so
// two Services may claim one address . protocol . port (a Frontend). The
// model decides who owns it, seeing every Service: a ClusterIP is never
// displaced by an externalIP or LoadBalancer IP; between equals the older
// Service keeps it (creationTimestamp, then UID), so no choice of name
// takes another namespace's address. Every other claimant's entries are
// sent without that address, the rest of the Service unchanged, and its
// Result lists the Conflicts. An index from frontend to claimants keeps a
// change's cost that of the changed Service; the change that frees an
// address hands it to the next claimant in the same Results. Agents keep a
// rule of their own for what they are sent (defence in depth); what the
// model sends never claims a frontend twice.
package model
