"""Reads every transaction of the partner's SOAP service with zeep (a real SOAP client,
WS-Security UsernameToken with a digest), as JSON lines: what sluice must land.

Usage: zeep_read.py WSDL_URL TENANT USER PASSWORD
"""

import json
import sys

from zeep import Client
from zeep.wsse.username import UsernameToken


def main():
    wsdl, tenant, user, password = sys.argv[1:5]
    client = Client(wsdl, wsse=UsernameToken(user, password, use_digest=True))
    service = client.create_service(
        "{urn:tags}TagService", wsdl.split("?")[0] + f"?t={tenant}"
    )
    token = None
    while True:
        page = service.GetTransactions(since=None, until=None, pageToken=token)
        for t in page.transactions or []:
            print(json.dumps({
                "id": t.id,
                "tag_id": t.tag_id,
                "plaza": t.plaza,
                "amount": t.amount,
                "occurred_at": t.occurred_at.isoformat(),
                "plate": t.vehicle.plate,
            }))
        token = page.nextPageToken
        if not token:
            break


if __name__ == "__main__":
    main()
