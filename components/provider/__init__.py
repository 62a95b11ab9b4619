"""The component provider: the components for every Pulumi language, with a schema inferred from their Args."""

from .host import HOSTED, PACKAGE, Provider, provider, provider_components, serve
from .schema import EXCLUDED, UnsupportedField

__all__ = ["EXCLUDED", "HOSTED", "PACKAGE", "Provider", "UnsupportedField", "provider", "provider_components", "serve"]
