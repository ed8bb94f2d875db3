"""The OpenStack APIs as WSGI applications for gunicorn (e2e/openstack/start.sh).

gunicorn imports `wsgi_app:application`; NODEHEALER_WSGI_APP names the service's own
entry point (`keystone.wsgi.api:application`, say). Two things differ from gunicorn importing
that entry point directly:
- Keystone and Neutron hand sys.argv to oslo.config, and under gunicorn those are gunicorn's
  arguments: their configuration comes from their OS_*_CONFIG_* variables alone.
- Magnum parses sys.argv itself when its WSGI module is imported: it gets
  `--config-file $NODEHEALER_MAGNUM_CONFIG` (magnum-api's own server answers one request at a
  time, 15-38 s each under a busy test run; gunicorn's threads do not queue them).
- Neutron: SQLAlchemy configures its mappers lazily, at the first query; when that query was a
  port listing, Neutron answered 500 (`type object 'Port' has no attribute
  'port_forwardings'`). Every model is imported and the mappers configured before the first
  request.
"""

import importlib
import os
import sys

sys.argv = sys.argv[:1]

_module, _, _attr = os.environ["NODEHEALER_WSGI_APP"].partition(":")
if _module.startswith("magnum."):
    sys.argv += ["--config-file", os.environ["NODEHEALER_MAGNUM_CONFIG"]]
application = getattr(importlib.import_module(_module), _attr)

if _module.startswith("neutron."):
    import sqlalchemy.orm
    from neutron.db.migration.models import head  # noqa: F401 (every model, for the mappers)

    sqlalchemy.orm.configure_mappers()
