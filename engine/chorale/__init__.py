"""Chorale harmonisation: encoding, pseudo-Gibbs sampling."""
