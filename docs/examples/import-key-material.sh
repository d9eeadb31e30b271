#!/usr/bin/env bash
# A key ceremony's material imported into QKMS with the AWS CLI and openssl (docs/crypto.md
# "Imported key material"). The material is made here with `openssl rand`; in a ceremony it comes
# from the ceremony's own HSM or offline machine. Run with the gateway's endpoint:
#   ENDPOINT=http://127.0.0.1:8080 bash docs/examples/import-key-material.sh
set -euo pipefail
kms() { aws kms --endpoint-url "${ENDPOINT:?set ENDPOINT to the gateway URL}" --output text "$@"; }
work=$(mktemp -d) && cd "$work"

# 1. A KMS key without material (KeyState PendingImport).
KEY_ID=$(kms create-key --origin EXTERNAL --description "imported at the key ceremony" --query KeyMetadata.KeyId)

# 2. The wrapping public key (made on the HSM, valid 24 hours) and the import token.
kms get-parameters-for-import --key-id "$KEY_ID" --wrapping-algorithm RSAES_OAEP_SHA_256 \
  --wrapping-key-spec RSA_4096 --query '[PublicKey,ImportToken]' > params.txt
cut -f1 params.txt | base64 -d > wrapping-key.der
cut -f2 params.txt | base64 -d > import-token.bin

# 3. The material: 32 random bytes for a symmetric key (a ceremony brings its own).
openssl rand -out material.bin 32

# 4. Encrypt it under the wrapping key: RSAES-OAEP with SHA-256 (and MGF1 SHA-256).
openssl pkeyutl -encrypt -pubin -keyform DER -inkey wrapping-key.der -in material.bin -out encrypted-material.bin \
  -pkeyopt rsa_padding_mode:oaep -pkeyopt rsa_oaep_md:sha256 -pkeyopt rsa_mgf1_md:sha256

# 5. Import it; the key becomes Enabled.
kms import-key-material --key-id "$KEY_ID" --import-token fileb://import-token.bin \
  --encrypted-key-material fileb://encrypted-material.bin --expiration-model KEY_MATERIAL_DOES_NOT_EXPIRE
kms describe-key --key-id "$KEY_ID" --query 'KeyMetadata.[KeyState,Origin,ExpirationModel]'

# 6. Use it; delete the material (PendingImport again) and import the same material again.
kms encrypt --key-id "$KEY_ID" --plaintext fileb://<(printf 'ceremony') --query CiphertextBlob | base64 -d > ciphertext.bin
kms delete-imported-key-material --key-id "$KEY_ID" > /dev/null
kms import-key-material --key-id "$KEY_ID" --import-token fileb://import-token.bin \
  --encrypted-key-material fileb://encrypted-material.bin --expiration-model KEY_MATERIAL_DOES_NOT_EXPIRE
kms decrypt --ciphertext-blob fileb://ciphertext.bin --query Plaintext | base64 -d; echo
rm -rf "$work"
